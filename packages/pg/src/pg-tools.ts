import { runChild } from './child-process.js';

export interface ToolVersion {
  version: string;
  major: number;
}

/** `pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)` → `{ version: '15.20', major: 15 }`. */
export function parseToolVersion(output: string): ToolVersion | undefined {
  const match = /\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?/.exec(output);
  if (!match?.[1]) return undefined;
  const version = match[2] === undefined ? match[1] : `${match[1]}.${match[2]}`;
  return { version, major: Number(match[1]) };
}

export type PgTool =
  | 'pg_dump'
  | 'pg_restore'
  | 'psql'
  | 'pg_receivewal'
  | 'pg_basebackup'
  | 'pg_verifybackup';

export async function toolVersion(tool: PgTool, env: NodeJS.ProcessEnv) {
  const output = await runChild(tool, ['--version'], { env });
  const parsed = parseToolVersion(output);
  if (!parsed) throw new Error(`could not read the version of ${tool} from "${output.trim()}"`);
  return parsed;
}

/** pg_dump must be at least as new as the server's major version to dump it correctly. */
export function pgDumpSupportsServer(pgDumpMajor: number, serverVersionNum: number): boolean {
  return pgDumpMajor >= Math.floor(serverVersionNum / 10_000);
}
