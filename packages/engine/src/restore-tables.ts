import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { type BackupManifest, parseTableName } from '@pgkeep/core';
import {
  startPgRestoreToScript,
  startPsqlScript,
  tableRestoreScript,
  withDatabase,
} from '@pgkeep/pg';
import type { PreparedArtifact } from './artifact-source.js';
import { decompressionStage } from './compression.js';
import type { EngineContext, RunContext } from './engine-context.js';
import { awaitPsql } from './restore-steps.js';

/**
 * Table restore, in the target itself and in one transaction: drop the backup's tables, load
 * them, check their row counts. A table that other tables reference through foreign keys
 * cannot be dropped, so that restore fails with PostgreSQL's reason and changes nothing.
 */
export async function restoreTables(
  engine: EngineContext,
  manifest: BackupManifest,
  artifact: PreparedArtifact,
  target: string,
  run: RunContext,
  signal: AbortSignal,
) {
  const script = tableRestoreScript(
    (manifest.tables ?? []).map((key) => ({
      ...parseTableName(key),
      rows: manifest.rowCounts[key] ?? null,
    })),
  );
  const into = withDatabase(engine.target, target);
  const psql = startPsqlScript(into, {
    variables: script.variables,
    after: [script.check],
    signal,
  });
  const { stdin } = psql.child;
  if (!stdin) throw new Error('psql was started without stdin');
  run.onProgress?.({ phase: 'restoring', percent: null });
  const started = Date.now();
  // The drops go first, on the same stdin as the dump: psql fills in the variables there.
  const withPrelude = async function* (dump: AsyncIterable<Buffer>) {
    yield Buffer.from(script.prelude);
    yield* dump;
  };
  let feeding: Promise<unknown>;
  if (manifest.format !== 'plain') {
    // The archive (decompressed: pg_restore reads the file, or the extracted directory, itself,
    // to its last byte) as SQL, fed to the same transaction.
    const dump = startPgRestoreToScript(into, { clean: false, signal, file: artifact.file });
    const { stdout: sqlOut } = dump.child;
    if (!sqlOut) throw new Error('pg_restore was started without a stdout pipe');
    feeding = Promise.all([pipeline(sqlOut, withPrelude, stdin, { signal }), dump.done]);
  } else {
    const stage = decompressionStage(artifact.compression, signal);
    const source = createReadStream(artifact.file);
    feeding = Promise.all([
      pipeline(source, stage.stream, withPrelude, stdin, { signal }),
      stage.done,
    ]);
  }
  await awaitPsql(psql, feeding, signal);
  return {
    previousDatabase: null,
    downtimeMs: Date.now() - started,
    rowCounts: manifest.rowCounts,
  };
}
