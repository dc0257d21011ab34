import { describe, expect, it } from 'vitest';
import { jobNameOfId, scheduleJobs, scheduleNames, schedulerId } from './job-catalog.js';

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
