import { discoveryPicks, loadConfig, loadTargets } from '@pgkeep/core';
import { describe, expect, it } from 'vitest';
import { scratchDatabaseName, scratchDatabasePrefix } from './database-admin.js';
import { settingValueSql, splitSettingList } from './database-swap.js';

describe('database settings carried over a swap', () => {
  it('splits a stored list setting the way PostgreSQL wrote it', () => {
    expect(splitSettingList('"$user", public')).toEqual(['$user', 'public']);
    expect(splitSettingList('app, "Weird ""Schema"", here", public')).toEqual([
      'app',
      'Weird "Schema", here',
      'public',
    ]);
    expect(splitSettingList('')).toEqual([]);
  });

  it('quotes each element of a list setting, and a scalar as one literal', () => {
    expect(settingValueSql('search_path', '"$user", public')).toBe("'$user', 'public'");
    expect(settingValueSql('work_mem', '7MB')).toBe("'7MB'");
    expect(settingValueSql('app.note', "it's, a list?")).toBe("'it''s, a list?'");
  });
});

describe('scratch database names', () => {
  it('carry a tag of the namespace, so deployments never sweep each other', () => {
    const mine = scratchDatabaseName('restore', 'panel-a');
    expect(mine.startsWith(scratchDatabasePrefix('restore', 'panel-a'))).toBe(true);
    expect(mine.startsWith(scratchDatabasePrefix('restore', 'panel-b'))).toBe(false);
    expect(mine.length).toBeLessThanOrEqual(63);
    expect(scratchDatabaseName('verify', 'panel-a')).not.toBe(
      scratchDatabaseName('verify', 'panel-a'),
    );
  });

  it('are never backed up by a discovery target, whatever the deployment', () => {
    const env = { DATABASE_URL: 'postgres://pgkeep@db.example/panel', JWT_SECRET: 's'.repeat(32) };
    const [anyTarget] = loadTargets(loadConfig(env), env).targets;
    if (!anyTarget) throw new Error('no target');
    expect(discoveryPicks(anyTarget, 'panel')).toBe(true);
    for (const kind of ['restore', 'verify'] as const) {
      for (const namespace of ['pgkeep', 'another_deployment']) {
        expect(discoveryPicks(anyTarget, scratchDatabaseName(kind, namespace))).toBe(false);
      }
    }
  });
});
