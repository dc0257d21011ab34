import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { cancelMarkerKey } from './cancellation.js';

/**
 * One job as a poll needs it, read in one Redis round trip: BullMQ's state, the job's hash and
 * the cancel marker, all from one Lua script. A script runs atomically, so the state and the
 * hash are from the same instant (a job that reads as finished comes with its final hash).
 *
 * The state checks are those of BullMQ's own `getStateV2` script, in its order, over the keys
 * of BullMQ's own key map; job-snapshot.int.test.ts compares the outcome with
 * `Queue.getJobState` and `Queue.getJob` for every state, so a BullMQ upgrade that changes
 * either shows up there. All keys share the queue prefix: this assumes one Redis, not a
 * cluster (as the rest of pgkeep does).
 */
const SNAPSHOT_SCRIPT = `
local id = ARGV[1]
local function inSet(key)
  return redis.call('ZSCORE', key, id)
end
local function inList(key)
  local position = redis.pcall('LPOS', key, id)
  if type(position) == 'table' and position.err then
    -- Redis before 6.0.6 has no LPOS (BullMQ supports 5.0 and up).
    for _, item in ipairs(redis.call('LRANGE', key, 0, -1)) do
      if item == id then return true end
    end
    return false
  end
  return position
end
local state = 'unknown'
if inSet(KEYS[1]) then state = 'completed'
elseif inSet(KEYS[2]) then state = 'failed'
elseif inSet(KEYS[3]) then state = 'delayed'
elseif inSet(KEYS[4]) then state = 'prioritized'
elseif inList(KEYS[5]) then state = 'active'
elseif inList(KEYS[6]) or inList(KEYS[7]) then state = 'waiting'
elseif inSet(KEYS[8]) then state = 'waiting-children'
end
return { state, redis.call('HGETALL', KEYS[9]), redis.call('GET', KEYS[10]) }
`;

const STATE_KEYS = [
  'completed',
  'failed',
  'delayed',
  'prioritized',
  'active',
  'wait',
  'paused',
  'waiting-children',
] as const;

const COMMAND = 'pgkeepJobSnapshot';

type SnapshotCommand = (...keysAndArgs: string[]) => Promise<[string, string[], string | null]>;

/** The fields of BullMQ's job hash that a job view shows, decoded as `Job.fromJSON` does. */
export interface JobSnapshot {
  /** BullMQ's state name: completed, failed, delayed, prioritized, active, waiting, … */
  bullState: string;
  data: { requestedBy?: unknown; targetName?: unknown };
  progress: unknown;
  returnvalue: unknown;
  failedReason: string | undefined;
  attemptsMade: number;
  timestamp: number;
  processedOn: number | undefined;
  finishedOn: number | undefined;
  cancelRequestedBy: string | null;
}

function snapshotCommand(redis: Redis): SnapshotCommand {
  const commands = redis as unknown as Record<string, SnapshotCommand | undefined>;
  // ioredis sends EVALSHA and falls back to EVAL once when Redis does not know the script yet.
  if (!commands[COMMAND]) {
    redis.defineCommand(COMMAND, { numberOfKeys: STATE_KEYS.length + 2, lua: SNAPSHOT_SCRIPT });
  }
  return (commands[COMMAND] as SnapshotCommand).bind(redis);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    // BullMQ logs a corrupted return value and leaves it undefined.
    return undefined;
  }
}

/** The job's snapshot, or undefined when Redis has no such job (no state or no hash). */
export async function readJobSnapshot(
  redis: Redis,
  queue: Queue,
  prefix: string,
  jobId: string,
): Promise<JobSnapshot | undefined> {
  const keys = [
    ...STATE_KEYS.map((key) => queue.keys[key] ?? queue.toKey(key)),
    queue.toKey(jobId),
    cancelMarkerKey(prefix, jobId),
  ];
  const [bullState, flatHash, marker] = await snapshotCommand(redis)(...keys, jobId);
  if (bullState === 'unknown' || flatHash.length === 0) return undefined;
  const raw: Record<string, string> = {};
  for (let i = 0; i + 1 < flatHash.length; i += 2) {
    raw[flatHash[i] as string] = flatHash[i + 1] as string;
  }
  const int = (value: string | undefined) => (value ? Number.parseInt(value, 10) : undefined);
  return {
    bullState,
    data: JSON.parse(raw.data || '{}') as { requestedBy?: unknown; targetName?: unknown },
    progress: (JSON.parse(raw.progress || '0') as unknown) ?? 0,
    returnvalue: typeof raw.returnvalue === 'string' ? parseJson(raw.returnvalue) : null,
    failedReason: raw.failedReason,
    attemptsMade: Number.parseInt(raw.attemptsMade || raw.atm || '0', 10),
    timestamp: Number.parseInt(raw.timestamp ?? '', 10),
    processedOn: int(raw.processedOn),
    finishedOn: int(raw.finishedOn),
    cancelRequestedBy: marker,
  };
}
