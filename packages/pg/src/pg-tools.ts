import { accessSync, constants, readdirSync } from 'node:fs';
import path from 'node:path';
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

/**
 * Where a PostgreSQL program lives: on PATH, or in the versioned directory the Debian/Ubuntu
 * (`/usr/lib/postgresql/<major>/bin`) and PGDG RPM (`/usr/pgsql-<major>/bin`) packages install
 * to, which keep server-side tools (pg_verifybackup, postgres, initdb) off PATH. The newest
 * major is taken when none is asked for. Undefined when it is nowhere.
 */
export function findPgProgram(name: string, major?: number): string | undefined {
  const onPath = (process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin')
    .split(path.delimiter)
    .map((dir) => path.join(dir, name))
    .find(isExecutable);
  const versioned = (base: string, layout: (version: string) => string) => {
    let versions: string[];
    try {
      versions = readdirSync(base).filter((entry) => /^[0-9]+$/.test(entry));
    } catch {
      return [];
    }
    return versions
      .filter((version) => major === undefined || Number(version) === major)
      .sort((a, b) => Number(b) - Number(a))
      .map((version) => layout(version));
  };
  const candidates = [
    ...versioned('/usr/lib/postgresql', (version) =>
      path.join('/usr/lib/postgresql', version, 'bin', name),
    ),
    ...rpmDirs(major).map((dir) => path.join(dir, name)),
  ];
  // A program on PATH of another major than the one asked for is not the one wanted.
  const versionedHit = candidates.find(isExecutable);
  if (major !== undefined) return versionedHit ?? onPath;
  return onPath ?? versionedHit;
}

function rpmDirs(major: number | undefined): string[] {
  let entries: string[];
  try {
    entries = readdirSync('/usr');
  } catch {
    return [];
  }
  return entries
    .map((entry) => /^pgsql-([0-9]+)$/.exec(entry))
    .filter((match): match is RegExpExecArray => match !== null)
    .filter((match) => major === undefined || Number(match[1]) === major)
    .sort((a, b) => Number(b[1]) - Number(a[1]))
    .map((match) => path.join('/usr', match[0], 'bin'));
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
