import { describe, expect, it } from 'vitest';
import {
  derivedJobId,
  discoverySchedulerId,
  jobNameOfId,
  scheduleJobs,
  scheduleNames,
  schedulerId,
} from './job-catalog.js';

describe('jobNameOfId for scheduled runs', () => {
  it.each([
    ['repeat:schedule-backup:1795698000000', 'backup'],
    ['repeat:schedule-cleanup:1795698000000', 'cleanup'],
    ['repeat:schedule-verify:1795698000000', 'verify'],
    ['repeat:schedule-backup:1', 'backup'],
  ])('maps %s to the %s job', (id, job) => {
    expect(jobNameOfId(id)).toBe(job);
  });

  it('maps the run of every schedule to the job it runs', () => {
    for (const name of scheduleNames) {
      expect(jobNameOfId(`repeat:${schedulerId(name)}:1795698000000`)).toBe(scheduleJobs[name]);
    }
  });

  it.each([
    'repeat:schedule-restore:1',
    'repeat:schedule-delete:1',
    'repeat:other:1',
    'repeat:schedule-backup:abc',
    'repeat:schedule-backup:',
    'repeat:schedule-backup:12345678901234567',
    'repeat:schedule-backup:-1',
    'repeat:schedule-backup:1795698000000:1',
    'repeat:schedule-backup',
    'repeat:schedule-Backup:1795698000000',
    'repeat:schedule-toString:1',
    ' repeat:schedule-backup:1795698000000',
    'repeat:schedule-backup:1795698000000\n',
    'x-repeat:schedule-backup:1795698000000',
  ])('rejects %j', (id) => {
    expect(jobNameOfId(id)).toBeUndefined();
  });
});

describe('schedules of targets', () => {
  it('keeps the seed ids for `default` and names every other target', () => {
    expect(schedulerId('backup')).toBe('schedule-backup');
    expect(schedulerId('backup', 'default')).toBe('schedule-backup');
    expect(schedulerId('cleanup', 'orders')).toBe('schedule-cleanup.orders');
    expect(jobNameOfId('repeat:schedule-cleanup.orders:1795698000000')).toBe('cleanup');
    expect(jobNameOfId(`repeat:${discoverySchedulerId('backup', 'all')}:1795698000000`)).toBe(
      'discover',
    );
    expect(jobNameOfId('repeat:schedule-cleanup.Bad!:1795698000000')).toBeUndefined();
  });

  it('derives the same job id for the same run and target, another for another', () => {
    const a = derivedJobId('backup', 'repeat:discover-backup.all:1', 'main/orders');
    expect(a).toBe(derivedJobId('backup', 'repeat:discover-backup.all:1', 'main/orders'));
    expect(a).not.toBe(derivedJobId('backup', 'repeat:discover-backup.all:2', 'main/orders'));
    expect(a).not.toBe(derivedJobId('backup', 'repeat:discover-backup.all:1', 'main/billing'));
    expect(jobNameOfId(a)).toBe('backup');
  });
});
