import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';

/** What s3rver accepts: its one built-in account, and the region its listing tokens name. */
export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;
export const S3RVER_REGION = 'us-east-1';

interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
}
type S3rverClass = new (options: {
  port: number;
  address: string;
  silent: boolean;
  directory: string;
  resetOnClose: boolean;
}) => S3rverInstance;

// s3rver ships no type declarations; this is the part of it the tests use.
const S3rver = createRequire(import.meta.url)('s3rver') as S3rverClass;

/** A plain client for what a test does behind a destination's back. */
export function s3TestClient(endpoint: string): S3Client {
  return new S3Client({
    endpoint,
    region: S3RVER_REGION,
    forcePathStyle: true,
    credentials: S3RVER_CREDENTIALS,
  });
}

export interface S3TestServer {
  endpoint: string;
  directory: string;
  stop(): Promise<void>;
}

/** A real S3 API (s3rver, in this process) on a free port, with `buckets` created. */
export async function startS3Server(buckets: string[]): Promise<S3TestServer> {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'pgkeep-s3rver-'));
  const server = new S3rver({
    port: 0,
    address: '127.0.0.1',
    silent: true,
    directory,
    resetOnClose: true,
  });
  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  const client = s3TestClient(endpoint);
  try {
    for (const bucket of buckets) await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } finally {
    client.destroy();
  }
  return {
    endpoint,
    directory,
    async stop() {
      await server.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
}

export interface FaultRule {
  /** Asked about every request, refused or not, so a test may also count what passes. */
  match: (req: http.IncomingMessage) => boolean;
  /** How many matching requests are refused; every later one is forwarded. */
  failures: number;
  /** A 503 SlowDown as S3 sends it when throttling, or a connection dropped mid-request. */
  mode: 'status-503' | 'reset';
}

export interface FaultyProxy {
  endpoint: string;
  /** How many requests it refused so far. */
  failed(): number;
  /**
   * Refuses the next `failures` matching requests (in `mode`, else the rule's), whatever was
   * refused before: one proxy, and one process configured with its address, for many cases.
   */
  refuseNext(failures: number, mode?: FaultRule['mode']): void;
  stop(): Promise<void>;
}

// Hop-by-hop headers belong to one connection; SigV4 never signs them, so dropping them keeps
// the signature valid. The Host header is signed and is forwarded unchanged.
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'expect',
  'te',
  'trailer',
]);

function endToEnd(headers: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !HOP_BY_HOP.has(name)));
}

const SLOW_DOWN = `<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`;

/**
 * A reverse proxy to `targetEndpoint` that refuses the first `rule.failures` requests matching
 * `rule.match` and forwards everything else, bodies streamed both ways: a real server that
 * fails exactly when a test needs it to.
 */
export async function startFaultyProxy(
  targetEndpoint: string,
  rule: FaultRule,
): Promise<FaultyProxy> {
  const target = new URL(targetEndpoint);
  let refused = 0;
  let refuseUntil = rule.failures;
  let mode = rule.mode;
  const server = http.createServer((req, res) => {
    if (rule.match(req) && refused < refuseUntil) {
      refused += 1;
      if (mode === 'reset') {
        req.socket.destroy();
        return;
      }
      // Read the whole body first, as S3 does, so the client sees an answer, not a broken pipe.
      req.resume();
      req.on('end', () => {
        res.writeHead(503, { 'content-type': 'application/xml', connection: 'close' });
        res.end(SLOW_DOWN);
      });
      return;
    }
    const upstream = http.request(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers: endToEnd(req.headers),
      },
      (response) => {
        res.writeHead(response.statusCode ?? 502, endToEnd(response.headers));
        pipeline(response, res).catch(() => res.destroy());
      },
    );
    upstream.on('error', () => res.destroy());
    pipeline(req, upstream).catch(() => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    failed: () => refused,
    refuseNext(failures, nextMode) {
      refuseUntil = refused + failures;
      mode = nextMode ?? mode;
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve, reject) =>
        server.close((error) => (error ? reject(error) : resolve())),
      );
    },
  };
}
