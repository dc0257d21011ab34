import type { ServerSettings } from '@pgkeep/core';
import {
  ChildProcessError,
  clientConfig,
  libpqEnv,
  type PgTarget,
  runChild,
  type ToolVersion,
  toolVersion,
} from '@pgkeep/pg';
import pg from 'pg';
import { serverConnection } from '../target-registry.js';

/** What WAL streaming and base backups of a server need, and what was found. */
export interface PitrCheck {
  ok: boolean;
  /** Each missing requirement, said so that an operator knows what to change. */
  reasons: string[];
  serverVersion: string | null;
  serverVersionNum: number | null;
  walSegmentSize: number | null;
  systemIdentifier: string | null;
  timeline: number | null;
  pgReceivewal: ToolVersion | null;
  pgBasebackup: ToolVersion | null;
}

/** The first line of a tool's error, without the tool's own prefix. */
function firstLine(error: unknown): string {
  const text = error instanceof ChildProcessError ? error.stderrTail : (error as Error).message;
  const line =
    text
      .split('\n')
      .map((part) => part.trim())
      .find((part) => part !== '') ?? 'failed';
  return line.replace(/^(psql|pg_receivewal|pg_basebackup): (error: )?/, '').slice(0, 300);
}

/**
 * `IDENTIFY_SYSTEM` over a replication connection, as pg_receivewal and pg_basebackup make one:
 * proves the pg_hba.conf replication entry and the REPLICATION attribute, and says which
 * cluster and timeline the server is on.
 */
export async function identifySystem(
  target: PgTarget,
  env: NodeJS.ProcessEnv,
): Promise<{ systemIdentifier: string; timeline: number; xlogpos: string }> {
  const output = await runChild(
    'psql',
    ['-X', '-A', '-t', '-q', '-d', 'replication=true', '-c', 'IDENTIFY_SYSTEM'],
    { env: libpqEnv(target, env) },
  );
  const [systemIdentifier, timeline, xlogpos] = output.trim().split('|');
  if (!systemIdentifier || !/^[0-9]+$/.test(systemIdentifier) || !timeline || !xlogpos) {
    throw new Error('IDENTIFY_SYSTEM answered in an unknown shape');
  }
  return { systemIdentifier, timeline: Number(timeline), xlogpos };
}

/**
 * Checks everything point-in-time recovery of `server` needs, each missing piece a reason:
 * `wal_level` replica or logical, free WAL senders and replication slots, a role with
 * REPLICATION, a pg_hba.conf replication entry, and pg_receivewal / pg_basebackup of at least
 * the server's major version.
 */
export async function checkPitrRequirements(
  server: ServerSettings,
  env: NodeJS.ProcessEnv = { PATH: process.env.PATH },
): Promise<PitrCheck> {
  const check: PitrCheck = {
    ok: false,
    reasons: [],
    serverVersion: null,
    serverVersionNum: null,
    walSegmentSize: null,
    systemIdentifier: null,
    timeline: null,
    pgReceivewal: null,
    pgBasebackup: null,
  };
  const target = serverConnection(server);
  const client = new pg.Client(clientConfig(target, 'pgkeep-pitr-check'));
  client.on('error', () => {});
  try {
    await client.connect();
    const { rows } = await client.query<{
      wal_level: string;
      version: string;
      version_num: string;
      segment: string;
      senders: string;
      slots: string;
      replication: boolean | null;
    }>(
      `SELECT current_setting('wal_level') AS wal_level,
              current_setting('server_version') AS version,
              current_setting('server_version_num') AS version_num,
              (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size') AS segment,
              current_setting('max_wal_senders') AS senders,
              current_setting('max_replication_slots') AS slots,
              (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user) AS replication`,
    );
    const row = rows[0];
    if (row) {
      check.serverVersion = row.version.split(' ')[0] ?? row.version;
      check.serverVersionNum = Number(row.version_num);
      check.walSegmentSize = Number(row.segment);
      if (row.wal_level !== 'replica' && row.wal_level !== 'logical') {
        check.reasons.push(
          `wal_level is ${row.wal_level}: set wal_level = replica (or logical) and restart the server`,
        );
      }
      if (Number(row.senders) < 1) check.reasons.push('max_wal_senders is 0: set it to 2 or more');
      if (Number(row.slots) < 1) {
        check.reasons.push('max_replication_slots is 0: set it to 1 or more');
      }
      if (!row.replication) {
        check.reasons.push(
          `role ${target.user} lacks REPLICATION: ALTER ROLE ${target.user} REPLICATION`,
        );
      }
    }
  } catch (error) {
    check.reasons.push(`cannot connect to the server: ${(error as Error).message.slice(0, 200)}`);
    return check;
  } finally {
    await client.end().catch(() => {});
  }
  if (check.reasons.length === 0) {
    try {
      const identity = await identifySystem(target, env);
      check.systemIdentifier = identity.systemIdentifier;
      check.timeline = identity.timeline;
    } catch (error) {
      check.reasons.push(`a replication connection is refused: ${firstLine(error)}`);
    }
  }
  const major = check.serverVersionNum ? Math.floor(check.serverVersionNum / 10_000) : null;
  for (const tool of ['pg_receivewal', 'pg_basebackup'] as const) {
    try {
      const version = await toolVersion(tool, env);
      if (tool === 'pg_receivewal') check.pgReceivewal = version;
      else check.pgBasebackup = version;
      if (major !== null && version.major < major) {
        check.reasons.push(
          `${tool} ${version.version} is older than the server (${major}): install the client tools of version ${major}`,
        );
      }
    } catch (error) {
      check.reasons.push(`${tool} cannot run: ${firstLine(error)}`);
    }
  }
  check.ok = check.reasons.length === 0;
  return check;
}
