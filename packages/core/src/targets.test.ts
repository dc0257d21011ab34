import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { type Config, ConfigError, loadConfig } from './config.js';
import {
  discoveredTargetName,
  discoveryPicks,
  loadTargets,
  parseTargetsFile,
  type TargetSettings,
  type TargetsConfig,
  targetNameSchema,
} from './targets.js';

const databaseUrl = 'postgres://pgkeep:pw@db.example:5432/app';
const baseEnv = { JWT_SECRET: 'a-very-long-hs256-secret-of-40-characters!' };
const encryptionKey = Buffer.alloc(32, 7).toString('base64');
/** Config for a file with the S3 destination `offsite` and an encryption key. */
const fullEnv = {
  ...baseEnv,
  TARGETS_FILE: 'targets.yaml',
  BACKUP_DESTINATIONS: 'local,offsite',
  S3_OFFSITE_BUCKET: 'pgkeep-offsite',
  BACKUP_ENCRYPTION_KEY: encryptionKey,
};

function config(env: Record<string, string>): Config {
  return loadConfig(env);
}

function issues(run: () => unknown): string[] {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).issues;
  }
  throw new Error('the targets were accepted');
}

/** The issues of a YAML text parsed against `env` (a file with a destination and a key). */
function yamlIssues(text: string, env: Record<string, string> = {}): string[] {
  return issues(() =>
    parseTargetsFile(text, 'targets.yaml', config({ ...fullEnv, ...env }), { ...fullEnv, ...env }),
  );
}

function parseYaml(text: string, env: Record<string, string> = {}): TargetsConfig {
  return parseTargetsFile(text, 'targets.yaml', config({ ...fullEnv, ...env }), {
    ...fullEnv,
    ...env,
  });
}

function target(targets: TargetsConfig, name: string): TargetSettings {
  const found = targets.targets.find((candidate) => candidate.name === name);
  if (!found) throw new Error(`no target ${name}`);
  return found;
}

const oneTarget = (lines: string) => `
servers:
  main:
    url: postgres://pgkeep@db1:5432/postgres
targets:
  panel:
    server: main
    database: panel
${lines}`;

const example = `
servers:
  main:
    url: postgres://pgkeep@db1:5432/postgres
    password: \${MAIN_DB_PASSWORD}
    maxConcurrentJobs: 2
  other:
    url: postgresql://backup:inline-pw@db2.internal/maint?sslmode=require
targets:
  panel:
    server: main
    database: panel
    schedules:
      backup: "0 2 * * *"
      cleanup: "0 3 * * 0"
      verify: off
    timeZone: Europe/Lisbon
    retention: { keepLast: 14 }
    destinations: [local, offsite]
    encryption: true
    restore: false
    format: plain
    compression: gzip
    verifyRestore: true
    tables: { include: [User, public.Message] }
  everything:
    server: other
    database: "*"
    include: ["app_*"]
    exclude: ["scratch_*"]
    retention: { gfs: { days: 7, weeks: 4, months: 12, years: 5 } }
    tables: { exclude: [audit_log] }
`;

describe('loadTargets with DATABASE_URL alone', () => {
  it('is the server and target `default`, with every setting of the environment as today', () => {
    const targets = loadTargets(config({ ...baseEnv, DATABASE_URL: databaseUrl }), {});
    expect(targets.source).toBe('env');
    expect(targets.servers).toHaveLength(1);
    const [server] = targets.servers;
    expect(server).toMatchObject({
      name: 'default',
      url: 'postgres://pgkeep@db.example:5432/postgres',
      maintenanceDatabase: 'postgres',
      maxConcurrentJobs: 1,
    });
    expect(server?.password).toBe('pw');
    expect(targets.lockServer).toBe(server);
    expect(targets.targets).toEqual([
      {
        name: 'default',
        server: 'default',
        database: 'app',
        include: [],
        exclude: [],
        schedules: {
          backup: { pattern: '0 2 * * *', enabled: true },
          cleanup: { pattern: '0 3 * * 0', enabled: true },
          verify: { pattern: '0 4 * * *', enabled: false },
        },
        timeZone: 'UTC',
        retention: { kind: 'keep-last', keepLast: 30 },
        destinations: ['local'],
        encryption: false,
        restoreEnabled: true,
        format: 'custom',
        dumpJobs: null,
        compression: 'zstd',
        verifyRestore: false,
        tables: { include: null, exclude: [] },
      },
    ]);
  });

  it('follows the environment: schedules, retention, switches, encryption, maintenance db', () => {
    const targets = loadTargets(
      config({
        ...baseEnv,
        DATABASE_URL: 'postgresql://u@db.example/',
        MAINTENANCE_DATABASE: 'maint',
        AUTO_BACKUP_ENABLED: 'false',
        BACKUP_SCHEDULE: '30 1 * * *',
        BACKUP_CLEANUP_SCHEDULE: 'off',
        VERIFY_SCHEDULE: '0 5 * * 1',
        BACKUP_TIMEZONE: 'Europe/Lisbon',
        BACKUP_RETENTION: 'gfs',
        BACKUP_GFS_YEARS: '2',
        RESTORE_ENABLED: 'false',
        VERIFY_RESTORE: 'true',
        BACKUP_FORMAT: 'plain',
        BACKUP_COMPRESSION: 'none',
        BACKUP_ENCRYPTION_PASSPHRASE: 'a long enough passphrase',
      }),
      {},
    );
    const [server] = targets.servers;
    expect(server?.url).toBe('postgresql://u@db.example/maint');
    expect(server?.password).toBeUndefined();
    expect(target(targets, 'default')).toMatchObject({
      database: 'postgres',
      schedules: {
        backup: { pattern: '30 1 * * *', enabled: false },
        cleanup: { pattern: '0 3 * * 0', enabled: false },
        verify: { pattern: '0 5 * * 1', enabled: true },
      },
      timeZone: 'Europe/Lisbon',
      retention: { kind: 'gfs', days: 7, weeks: 4, months: 12, years: 2 },
      encryption: true,
      restoreEnabled: false,
      verifyRestore: true,
      format: 'plain',
      compression: 'none',
    });
  });

  it('keeps the password out of the url and out of every string form', () => {
    const secret = 'Xy7-unmistakable-pw-4410';
    const targets = loadTargets(
      config({ ...baseEnv, DATABASE_URL: `postgres://pgkeep:${secret}@db.example/app` }),
      {},
    );
    expect(targets.servers[0]?.password).toBe(secret);
    expect(JSON.stringify(targets)).not.toContain(secret);
    expect(inspect(targets, { depth: 10 })).not.toContain(secret);
    expect(`${targets.servers[0]?.url}`).not.toContain(secret);
  });

  it('takes the lock server from LOCK_DATABASE_URL when set, named `locks`', () => {
    const targets = loadTargets(
      config({
        ...baseEnv,
        DATABASE_URL: databaseUrl,
        LOCK_DATABASE_URL: 'postgres://locker:lock-pw@locks.example:6432/pgkeep_locks',
      }),
      {},
    );
    expect(targets.lockServer).toMatchObject({
      name: 'locks',
      url: 'postgres://locker@locks.example:6432/pgkeep_locks',
      maintenanceDatabase: 'pgkeep_locks',
    });
    expect(targets.lockServer.password).toBe('lock-pw');
  });
});

describe('parseTargetsFile', () => {
  it('reads servers and targets from YAML, with defaults from the environment', () => {
    const targets = parseYaml(example, { MAIN_DB_PASSWORD: 'from-env-pw' });
    expect(targets.source).toBe('file');
    const [main, other] = targets.servers;
    expect(main).toMatchObject({
      name: 'main',
      url: 'postgres://pgkeep@db1:5432/postgres',
      maintenanceDatabase: 'postgres',
      maxConcurrentJobs: 2,
    });
    expect(main?.password).toBe('from-env-pw');
    // A password written in the url moves to the password field.
    expect(other).toMatchObject({
      name: 'other',
      url: 'postgresql://backup@db2.internal/maint?sslmode=require',
      maintenanceDatabase: 'maint',
      maxConcurrentJobs: 1,
    });
    expect(other?.password).toBe('inline-pw');
    expect(target(targets, 'panel')).toEqual({
      name: 'panel',
      server: 'main',
      database: 'panel',
      include: [],
      exclude: [],
      schedules: {
        backup: { pattern: '0 2 * * *', enabled: true },
        cleanup: { pattern: '0 3 * * 0', enabled: true },
        // `off` keeps the environment's pattern (here the fallback: VERIFY_SCHEDULE is off).
        verify: { pattern: '0 4 * * *', enabled: false },
      },
      timeZone: 'Europe/Lisbon',
      retention: { kind: 'keep-last', keepLast: 14 },
      destinations: ['local', 'offsite'],
      encryption: true,
      restoreEnabled: false,
      format: 'plain',
      dumpJobs: null,
      compression: 'gzip',
      verifyRestore: true,
      tables: { include: ['User', 'public.Message'], exclude: [] },
    });
    expect(target(targets, 'everything')).toEqual({
      name: 'everything',
      server: 'other',
      database: null,
      include: ['app_*'],
      exclude: ['scratch_*'],
      schedules: {
        backup: { pattern: '0 2 * * *', enabled: true },
        cleanup: { pattern: '0 3 * * 0', enabled: true },
        verify: { pattern: '0 4 * * *', enabled: false },
      },
      timeZone: 'UTC',
      retention: { kind: 'gfs', days: 7, weeks: 4, months: 12, years: 5 },
      destinations: ['local', 'offsite'],
      encryption: true,
      restoreEnabled: true,
      format: 'custom',
      dumpJobs: null,
      compression: 'zstd',
      verifyRestore: false,
      tables: { include: null, exclude: ['audit_log'] },
    });
    // Neither DATABASE_URL nor LOCK_DATABASE_URL: the locks go to the first server.
    expect(targets.lockServer).toBe(main);
  });

  it('reads the same settings from JSON', () => {
    const json = JSON.stringify({
      servers: {
        main: {
          url: 'postgres://pgkeep@db1:5432/postgres',
          password: `\${MAIN_DB_PASSWORD}`,
          maxConcurrentJobs: 2,
        },
        other: { url: 'postgresql://backup:inline-pw@db2.internal/maint?sslmode=require' },
      },
      targets: {
        panel: {
          server: 'main',
          database: 'panel',
          schedules: { backup: '0 2 * * *', cleanup: '0 3 * * 0', verify: 'off' },
          timeZone: 'Europe/Lisbon',
          retention: { keepLast: 14 },
          destinations: ['local', 'offsite'],
          encryption: true,
          restore: false,
          format: 'plain',
          compression: 'gzip',
          verifyRestore: true,
          tables: { include: ['User', 'public.Message'] },
        },
        everything: {
          server: 'other',
          database: '*',
          include: ['app_*'],
          exclude: ['scratch_*'],
          retention: { gfs: { days: 7, weeks: 4, months: 12, years: 5 } },
          tables: { exclude: ['audit_log'] },
        },
      },
    });
    const env = { ...fullEnv, MAIN_DB_PASSWORD: 'from-env-pw' };
    const fromJson = parseTargetsFile(json, 'targets.json', config(env), env);
    const fromYaml = parseYaml(example, { MAIN_DB_PASSWORD: 'from-env-pw' });
    expect(fromJson).toEqual(fromYaml);
    expect(fromJson.servers.map((server) => server.password)).toEqual(['from-env-pw', 'inline-pw']);
  });

  it('reads targets.example.yaml, the example of docs/targets.md', () => {
    const text = readFileSync(new URL('../../../targets.example.yaml', import.meta.url), 'utf8');
    const env = { ...fullEnv, MAIN_DB_PASSWORD: 'main-pw' };
    const targets = parseTargetsFile(text, 'targets.example.yaml', config(env), env, {
      readSecretFile: (path) => {
        expect(path).toBe('/run/secrets/reports_db_password');
        return 'reports-pw\n';
      },
    });
    expect(targets.servers.map((server) => [server.name, server.password])).toEqual([
      ['main', 'main-pw'],
      ['reports', 'reports-pw'],
    ]);
    expect(targets.targets.map((each) => [each.name, each.database])).toEqual([
      ['panel', 'panel'],
      ['reports', null],
    ]);
  });

  it('allows a target named like a server, and a target named `default`', () => {
    const targets = parseYaml(`
servers:
  main: { url: "postgres://db1/postgres" }
targets:
  main: { server: main, database: app }
  default: { server: main, database: other }
`);
    expect(targets.targets.map((each) => each.name)).toEqual(['main', 'default']);
  });

  it('takes numbers and switches given as strings, which is what a variable yields', () => {
    const targets = parseYaml(
      `
servers:
  main: { url: "postgres://db1/postgres", maxConcurrentJobs: "\${JOBS}" }
targets:
  panel: { server: main, database: panel, restore: "\${RESTORE}", retention: { keepLast: "\${KEEP}" } }
`,
      { JOBS: '4', RESTORE: 'false', KEEP: '9' },
    );
    expect(targets.servers[0]?.maxConcurrentJobs).toBe(4);
    expect(target(targets, 'panel')).toMatchObject({
      restoreEnabled: false,
      retention: { kind: 'keep-last', keepLast: 9 },
    });
  });

  it('replaces variables inside a value, keeps $$ before a brace literal, and inserts no structure', () => {
    const targets = parseYaml(
      `
servers:
  main:
    url: postgres://\${DB_USER}@\${DB_HOST}:5432/postgres
    password: "pa$\${literal}-\${PW_TAIL}"
targets:
  panel: { server: main, database: "\${DB_NAME}" }
`,
      {
        DB_USER: 'pgkeep',
        DB_HOST: 'db1',
        PW_TAIL: 'tail\nextra: injected',
        DB_NAME: 'panel',
      },
    );
    expect(targets.servers[0]?.url).toBe('postgres://pgkeep@db1:5432/postgres');
    expect(targets.servers[0]?.password).toBe(`pa\${literal}-tail\nextra: injected`);
    expect(target(targets, 'panel').database).toBe('panel');
  });

  it('names a missing variable, with where it is used, never a value', () => {
    const found = yamlIssues(
      `
servers:
  main:
    url: postgres://db1/postgres
    password: \${MAIN_DB_PASSWORD}
targets:
  panel: { server: main, database: panel, timeZone: "\${PANEL_TZ}" }
`,
      { OTHER_SECRET: 'Qv3-other-secret-value' },
    );
    expect(found).toEqual([
      `targets file: servers.main.password: \${MAIN_DB_PASSWORD} is not set in the environment`,
      `targets file: targets.panel.timeZone: \${PANEL_TZ} is not set in the environment`,
    ]);
    expect(found.join('\n')).not.toContain('Qv3-other-secret-value');
    expect(yamlIssues(oneTarget(`    timeZone: "\${lowercase}"`))).toEqual([
      `targets file: targets.panel.timeZone: "\${" must start a variable such as \${DB_PASSWORD} (write $\${ for "\${")`,
    ]);
  });

  it('reads passwordFile relative to the targets file, without its trailing newline', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgkeep-targets-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'main.secret'), 'file-pw-83 \n');
    writeFileSync(
      join(dir, 'targets.yml'),
      `
servers:
  main: { url: "postgres://pgkeep@db1/postgres", passwordFile: main.secret }
  gone: { url: "postgres://pgkeep@db2/postgres", passwordFile: ${join(dir, 'missing')} }
targets:
  panel: { server: main, database: panel }
`,
    );
    const env = { ...baseEnv, TARGETS_FILE: join(dir, 'targets.yml') };
    expect(issues(() => loadTargets(config(env), env))).toEqual([
      `targets file: servers.gone.passwordFile: cannot read ${join(dir, 'missing')} (ENOENT)`,
    ]);
    writeFileSync(
      join(dir, 'targets.yml'),
      `
servers:
  main: { url: "postgres://pgkeep@db1/postgres", passwordFile: main.secret }
targets:
  panel: { server: main, database: panel }
`,
    );
    const targets = loadTargets(config(env), env);
    expect(targets.servers[0]?.password).toBe('file-pw-83 ');
    expect(targets.servers[0]?.url).toBe('postgres://pgkeep@db1/postgres');
  });

  it('says why the targets file cannot be read', () => {
    const env = { ...baseEnv, TARGETS_FILE: join(tmpdir(), 'pgkeep-no-such-dir', 'targets.yaml') };
    expect(issues(() => loadTargets(config(env), env))).toEqual([
      `targets file: cannot read ${env.TARGETS_FILE} (ENOENT)`,
    ]);
  });

  it('never puts a password into an error message', () => {
    const secret = 'Zq9-unmistakable-pw-7781';
    const bad = [
      // a url that is not postgres, with the password in it
      oneTarget('').replace('postgres://pgkeep@db1', `mysql://pgkeep:${secret}@db1`),
      // a password in the url and in password
      oneTarget('').replace(
        'postgres://pgkeep@db1:5432/postgres',
        `postgres://pgkeep:${secret}@db1/postgres\n    password: ${secret}`,
      ),
      // a password in the query
      oneTarget('').replace('5432/postgres', `5432/postgres?password=${secret}`),
      // an unknown key beside the password, and a password of the wrong type
      `servers:\n  main: { url: "postgres://db1/x", password: ${secret}, pasword: ${secret} }\ntargets: {}`,
      `servers:\n  main: { url: "postgres://db1/x", password: [${secret}] }\ntargets: {}`,
      // YAML broken on the password's own line
      `servers:\n  main:\n    url: postgres://db1/x\n    password: "${secret}\ntargets: {}`,
      `servers:\n  main:\n    url: postgres://db1/x\n    password: !secret ${secret}\ntargets: {}`,
      `servers:\n  main:\n    url: postgres://db1/x\n    password: ${secret}\n    password: ${secret}\n`,
      `servers:\n  main:\n    url: postgres://db1/x\n    password: "\\q${secret}"\n`,
    ];
    for (const text of bad) {
      const found = yamlIssues(text);
      expect(found.length).toBeGreaterThan(0);
      for (const issue of found) expect(issue).not.toContain(secret);
    }
    const badJson = [
      `{"servers": {"main": {"url": "postgres://db1/x", "password": ${secret}}}}`,
      `{"servers": {"main": {"url": "postgres://db1/x", "password": "${secret}",}}}`,
      `{"servers": {"main": {"url": "mysql://u:${secret}@db1/x"}}, "targets": {}}`,
    ];
    for (const text of badJson) {
      const found = issues(() => parseTargetsFile(text, 'targets.json', config(fullEnv), fullEnv));
      expect(found.length).toBeGreaterThan(0);
      for (const issue of found) expect(issue).not.toContain(secret);
    }
  });

  it('refuses unknown keys, at every level', () => {
    expect(
      yamlIssues(`
servers:
  main: { url: "postgres://db1/postgres", maxJobs: 2 }
targets:
  panel:
    server: main
    database: panel
    retension: { keepLast: 3 }
    schedules: { backups: "0 2 * * *" }
notifications: {}
`).sort(),
    ).toEqual([
      'targets file: notifications: is not a known key',
      'targets file: servers.main.maxJobs: is not a known key',
      'targets file: targets.panel.retension: is not a known key',
      'targets file: targets.panel.schedules.backups: is not a known key',
    ]);
  });

  it('refuses a target name given twice, in YAML and in JSON', () => {
    const yaml = `
servers:
  main: { url: "postgres://db1/postgres" }
targets:
  panel: { server: main, database: panel }
  panel: { server: main, database: other }
`;
    expect(yamlIssues(yaml)).toEqual(['targets file: targets.panel: is given twice']);
    const json =
      '{"servers": {"main": {"url": "postgres://db1/postgres"}}, "targets": ' +
      '{"panel": {"server": "main", "database": "panel"}, "panel": {"server": "main", "database": "other"}}}';
    expect(issues(() => parseTargetsFile(json, 'targets.json', config(fullEnv), fullEnv))).toEqual([
      'targets file: targets.panel: is given twice',
    ]);
  });

  it('refuses a url that is not postgres', () => {
    for (const url of ['mysql://db1/x', 'not a url', 'http://db1/x']) {
      expect(yamlIssues(oneTarget('').replace('postgres://pgkeep@db1:5432/postgres', url))).toEqual(
        ['targets file: servers.main.url: must be a postgres:// or postgresql:// URL'],
      );
    }
  });

  it('refuses a password given twice', () => {
    expect(
      yamlIssues(
        oneTarget('').replace(
          'postgres://pgkeep@db1:5432/postgres',
          'postgres://pgkeep:pw@db1/postgres\n    passwordFile: /run/secrets/main',
        ),
      ),
    ).toEqual([
      'targets file: servers.main: give the password once: in url, password or passwordFile',
    ]);
  });

  it('refuses a target naming a server that is not there', () => {
    expect(yamlIssues(oneTarget('').replace('server: main', 'server: mian'))).toEqual([
      'targets file: targets.panel.server: names no server of servers (main)',
    ]);
  });

  it.each([
    ['    schedules: { backup: "61 * * * *" }', 'targets.panel.schedules.backup: must be a cron'],
    ['    schedules: { verify: "every day" }', 'targets.panel.schedules.verify: must be a cron'],
    ['    timeZone: Mars/Olympus', 'targets.panel.timeZone: must be an IANA time zone'],
    ['    include: ["app_*"]', 'targets.panel.include: only with database "*"'],
    ['    exclude: ["tmp_*"]', 'targets.panel.exclude: only with database "*"'],
    [
      '    retention: { keepLast: 3, gfs: { days: 1, weeks: 0, months: 0, years: 0 } }',
      'targets.panel.retention: give keepLast or gfs',
    ],
    [
      '    retention: { gfs: { days: 0, weeks: 0, months: 0, years: 0 } }',
      'targets.panel.retention.gfs: a GFS policy must keep something',
    ],
    [
      '    retention: { gfs: { days: 7, weeks: 4, months: 12 } }',
      'targets.panel.retention.gfs.years: is required',
    ],
    ['    retention: { keepLast: 0 }', 'targets.panel.retention.keepLast:'],
    [
      '    destinations: [local, nas]',
      'targets.panel.destinations[1]: "nas" is not a configured destination',
    ],
    ['    destinations: [local, local]', 'targets.panel.destinations: names a destination twice'],
    [
      '    tables: { include: [User], exclude: [Log] }',
      'targets.panel.tables: give include or exclude, not both',
    ],
    [
      '    tables: { include: ["bad name"] }',
      'targets.panel.tables.include[0]: must be a table name',
    ],
    ['    format: tar', 'targets.panel.format:'],
    ['    format: directory\n    jobs: 0', 'targets.panel.jobs:'],
    ['    format: directory\n    jobs: 33', 'targets.panel.jobs:'],
    ['    format: directory\n    jobs: many', 'targets.panel.jobs:'],
    [
      '    jobs: 4',
      "targets.panel.jobs: goes with format: directory (this target's format is custom)",
    ],
    ['    encryption: maybe', 'targets.panel.encryption:'],
  ])('refuses %j, naming %j', (lines, expected) => {
    const found = yamlIssues(oneTarget(lines));
    expect(found).toHaveLength(1);
    expect(found[0]).toContain(`targets file: ${expected}`);
  });

  it("takes a directory-format target's jobs from the file, else from BACKUP_DUMP_JOBS", () => {
    const own = parseYaml(oneTarget('    format: directory\n    jobs: "6"'));
    expect(target(own, 'panel')).toMatchObject({ format: 'directory', dumpJobs: 6 });
    const fromEnv = parseYaml(oneTarget('    format: directory'), { BACKUP_DUMP_JOBS: '3' });
    expect(target(fromEnv, 'panel')).toMatchObject({ format: 'directory', dumpJobs: 3 });
    expect(target(parseYaml(oneTarget('')), 'panel').dumpJobs).toBeNull();
  });

  it('refuses encryption: true when no key or passphrase is configured', () => {
    const env = { ...baseEnv, TARGETS_FILE: 't.yaml' };
    expect(
      issues(() => parseTargetsFile(oneTarget('    encryption: true'), 't.yaml', config(env), env)),
    ).toEqual([
      'targets file: targets.panel.encryption: is true but neither BACKUP_ENCRYPTION_KEY nor BACKUP_ENCRYPTION_PASSPHRASE is set',
    ]);
    // Without a key, a target is not encrypted by default; with one, it is unless it says no.
    const plain = parseTargetsFile(oneTarget(''), 't.yaml', config(env), env);
    expect(target(plain, 'panel').encryption).toBe(false);
    expect(target(parseYaml(oneTarget('')), 'panel').encryption).toBe(true);
    expect(target(parseYaml(oneTarget('    encryption: false')), 'panel').encryption).toBe(false);
  });

  it('refuses a destination the environment does not configure', () => {
    const env = { ...baseEnv, TARGETS_FILE: 't.yaml' };
    expect(
      issues(() =>
        parseTargetsFile(oneTarget('    destinations: [offsite]'), 't.yaml', config(env), env),
      ),
    ).toEqual([
      'targets file: targets.panel.destinations[0]: "offsite" is not a configured destination (list it in BACKUP_DESTINATIONS, with its S3_OFFSITE_* keys)',
    ]);
  });

  it('refuses bad names, and a file with no server or no target', () => {
    expect(
      yamlIssues(`
servers:
  Main: { url: "postgres://db1/postgres" }
targets:
  "panel/x": { server: Main, database: panel }
`),
    ).toEqual([
      'targets file: servers.Main: must be 1-63 lowercase letters, digits, "_" or "-"',
      'targets file: targets.panel/x: must be 1-63 lowercase letters, digits, "_" or "-"',
    ]);
    expect(yamlIssues('servers: {}\ntargets: {}\n')).toEqual([
      'targets file: servers: must name at least one',
      'targets file: targets: must name at least one',
    ]);
    expect(yamlIssues('')).toEqual(['targets file: must hold servers and targets']);
    expect(yamlIssues('- a\n- b\n')).toEqual(['targets file: must hold servers and targets']);
  });

  it('refuses a file over the limits: 64 servers, 1000 targets, 1 MiB', () => {
    const servers = Array.from({ length: 65 }, (_, i) => `  s${i}: { url: "postgres://db/x" }`);
    expect(
      yamlIssues(`servers:\n${servers.join('\n')}\ntargets:\n  t: { server: s0, database: x }\n`),
    ).toEqual(['targets file: servers: at most 64']);
    const targets = Array.from({ length: 1001 }, (_, i) => `  t${i}: { server: s, database: x }`);
    expect(
      yamlIssues(`servers:\n  s: { url: "postgres://db/x" }\ntargets:\n${targets.join('\n')}\n`),
    ).toEqual(['targets file: targets: at most 1000']);
    expect(yamlIssues(`# ${'x'.repeat(1024 * 1024)}\n`)).toEqual([
      'targets file: is larger than 1 MiB',
    ]);
  });

  it('answers a deeply nested file with a message, not a stack overflow', () => {
    const deep = `${'['.repeat(20_000)}${']'.repeat(20_000)}`;
    const json = `{"servers": {"main": {"url": ${deep}}}, "targets": {}}`;
    expect(
      issues(() => parseTargetsFile(json, 'targets.json', config(fullEnv), fullEnv)),
    ).toContainEqual(
      expect.stringMatching(/^targets file: servers\.main\.url(\[0\])+: is nested too deeply$/),
    );
    expect(yamlIssues(`servers:\n  main:\n    url: ${deep}\ntargets: {}\n`)).toEqual([
      expect.stringMatching(/nested too deeply/),
    ]);
  });

  it('reads only .yaml, .yml and .json files, and reports YAML errors by line', () => {
    expect(
      issues(() => parseTargetsFile(oneTarget(''), 'targets.toml', config(fullEnv), fullEnv)),
    ).toEqual(['targets file: its name must end in .yaml, .yml or .json']);
    const broken = yamlIssues('servers:\n  main: {\n');
    expect(broken.length).toBeGreaterThan(0);
    for (const issue of broken) expect(issue).toMatch(/^targets file: line \d+, column \d+: /);
    expect(yamlIssues('servers: {}\n---\ntargets: {}\n')[0]).toContain('more than one document');
  });

  it('puts the locks on DATABASE_URL`s server when a file is used, or on LOCK_DATABASE_URL', () => {
    const env = { ...fullEnv, DATABASE_URL: databaseUrl, MAINTENANCE_DATABASE: 'maint' };
    const withUrl = parseYaml(oneTarget(''), env);
    // DATABASE_URL adds no target `default` next to a file.
    expect(withUrl.targets.map((each) => each.name)).toEqual(['panel']);
    expect(withUrl.servers.map((each) => each.name)).toEqual(['main']);
    expect(withUrl.lockServer).toMatchObject({
      name: 'locks',
      url: 'postgres://pgkeep@db.example:5432/maint',
      maintenanceDatabase: 'maint',
    });
    expect(withUrl.lockServer.password).toBe('pw');
    const withLocks = parseYaml(oneTarget(''), {
      ...env,
      LOCK_DATABASE_URL: 'postgres://locker@locks.example/',
    });
    expect(withLocks.lockServer).toMatchObject({
      name: 'locks',
      url: 'postgres://locker@locks.example/maint',
      maintenanceDatabase: 'maint',
    });
  });
});

describe('discovery', () => {
  const everything = (include: string[] = [], exclude: string[] = []): TargetSettings => ({
    ...target(parseYaml(oneTarget('').replace('database: panel', 'database: "*"')), 'panel'),
    include,
    exclude,
  });

  it('names a found database <server>/<database>', () => {
    expect(discoveredTargetName('main', 'panel')).toBe('main/panel');
    // A discovered name can never be a declared target's name.
    expect(targetNameSchema.safeParse('main/panel').success).toBe(false);
  });

  it('leaves out templates, scratch databases of any deployment, and replaced databases', () => {
    const all = everything();
    expect(discoveryPicks(all, 'template0')).toBe(false);
    expect(discoveryPicks(all, 'template1')).toBe(false);
    // Scratch names as @pgkeep/pg makes them (its tests check its names against this rule).
    expect(discoveryPicks(all, 'pgkeep_restore_0123abcd_a1b2c3d4e5f6')).toBe(false);
    expect(discoveryPicks(all, 'pgkeep_verify_89ef0123_a1b2c3d4e5f6')).toBe(false);
    expect(discoveryPicks(all, 'panel_pre_restore_20260122163000_ab12')).toBe(false);
    expect(discoveryPicks(all, 'panel')).toBe(true);
    // The maintenance database is a real database: picked unless excluded.
    expect(discoveryPicks(all, 'postgres')).toBe(true);
    expect(discoveryPicks(everything([], ['postgres']), 'postgres')).toBe(false);
    // Databases whose names only look like pgkeep's are the users'.
    expect(discoveryPicks(all, 'pgkeep_t_app')).toBe(true);
    expect(discoveryPicks(all, 'template_app')).toBe(true);
  });

  it('applies include and exclude globs, case-sensitively', () => {
    const some = everything(['app_*', 'panel'], ['app_scratch*']);
    expect(discoveryPicks(some, 'app_one')).toBe(true);
    expect(discoveryPicks(some, 'panel')).toBe(true);
    expect(discoveryPicks(some, 'App_one')).toBe(false);
    expect(discoveryPicks(some, 'app_scratch_1')).toBe(false);
    expect(discoveryPicks(some, 'billing')).toBe(false);
    expect(discoveryPicks(everything([], ['tmp_?', 'old_{a,b}']), 'tmp_1')).toBe(false);
    expect(discoveryPicks(everything([], ['tmp_?', 'old_{a,b}']), 'old_b')).toBe(false);
    expect(discoveryPicks(everything([], ['tmp_?', 'old_{a,b}']), 'tmp_12')).toBe(true);
  });
});

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});
