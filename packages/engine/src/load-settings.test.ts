import { loadConfig } from '@pgkeep/core';
import { parseDatabaseUrl, restoreToolEnv } from '@pgkeep/pg';
import { describe, expect, it } from 'vitest';
import { temporaryDatabaseLoadSettings } from './load-settings.js';

const minimal = {
  DATABASE_URL: 'postgres://pgkeep@db.example:5432/app',
  JWT_SECRET: 'a-very-long-hs256-secret-of-40-characters!',
};
const temporary = parseDatabaseUrl('postgres://pgkeep@db.example:5432/pgkeep_restore_x');

describe('the settings of the load into a temporary database', () => {
  it('reach pg_restore and psql as PGOPTIONS: no commit waits for the disk, 256MB to sort in, no workers per index build', () => {
    const settings = temporaryDatabaseLoadSettings(loadConfig(minimal));
    expect(settings).toEqual({
      synchronous_commit: 'off',
      maintenance_work_mem: '256MB',
      max_parallel_maintenance_workers: '0',
    });
    expect(restoreToolEnv(temporary, settings).PGOPTIONS).toBe(
      '-c client_connection_check_interval=2000 -c synchronous_commit=off -c maintenance_work_mem=256MB -c max_parallel_maintenance_workers=0',
    );
  });

  it('take RESTORE_MAINTENANCE_WORK_MEM and RESTORE_PARALLEL_MAINTENANCE_WORKERS', () => {
    const config = loadConfig({
      ...minimal,
      RESTORE_MAINTENANCE_WORK_MEM: '1GB',
      RESTORE_PARALLEL_MAINTENANCE_WORKERS: '3',
    });
    expect(temporaryDatabaseLoadSettings(config)).toEqual({
      synchronous_commit: 'off',
      maintenance_work_mem: '1GB',
      max_parallel_maintenance_workers: '3',
    });
  });
});
