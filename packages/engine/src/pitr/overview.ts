import type { RecoverableWindow, ServerSettings } from '@pgkeep/core';
import { recoverableWindow } from './recoverable-window.js';
import type { WalArchive } from './wal-archive.js';
import type { ReceiverStatus } from './wal-receiver.js';

/** A server's point-in-time recovery as the API, health detail and metrics report it. */
export interface PitrOverview extends RecoverableWindow {
  /**
   * `ok`; `warning`: the window's end lags by more than lagWarningSeconds, a gap, a slot that
   * holds more WAL than retainedWarningBytes, a receiver that stopped or that nobody runs;
   * `unavailable`: a requirement is missing (reasons say which).
   */
  status: 'ok' | 'warning' | 'unavailable';
  reasons: string[];
  receiver: ReceiverStatus | null;
}

/**
 * The recoverable window from the archive's catalogs, judged against the server's thresholds,
 * with the receiver's last published status (null: no worker leads a receiver for it now).
 */
export async function pitrOverview(
  archive: WalArchive,
  server: ServerSettings,
  receiver: ReceiverStatus | null,
  now: Date = new Date(),
): Promise<PitrOverview> {
  const pitr = server.pitr;
  const identity = await archive.identity();
  const { manifests } = await archive.baseBackups();
  const archived = [...(await archive.archived()).values()];
  const window = recoverableWindow(
    server.name,
    manifests,
    archived,
    identity?.walSegmentSize ?? 16 * 1024 * 1024,
    now,
  );
  // A quiet server: nothing written since the newest archived segment, so the window reaches
  // up to when the receiver last saw that (only while the archive has no gap after it).
  const caughtUp = receiver?.caughtUpAt ? Date.parse(receiver.caughtUpAt) : null;
  if (
    window.to !== null &&
    caughtUp !== null &&
    receiver?.lastArchived?.name === window.lastSegment &&
    !window.gaps.some((gap) => gap.to === null) &&
    caughtUp > Date.parse(window.to)
  ) {
    window.to = new Date(caughtUp).toISOString();
    window.lagSeconds = Math.max(0, Math.round((now.getTime() - caughtUp) / 1000));
  }
  const reasons: string[] = [];
  let status: PitrOverview['status'] = 'ok';
  if (receiver?.state === 'unavailable') {
    return { ...window, status: 'unavailable', reasons: receiver.reasons, receiver };
  }
  if (!receiver) reasons.push('no worker runs the WAL receiver of this server');
  else if (receiver.state === 'error') reasons.push(...receiver.reasons);
  if (manifests.length === 0)
    reasons.push('no base backup yet: nothing can be restored to a point in time');
  else if (window.to === null) reasons.push('no base backup has all the WAL it needs archived yet');
  if (pitr && window.lagSeconds !== null && window.lagSeconds > pitr.lagWarningSeconds) {
    reasons.push(
      `the recoverable window ends ${window.lagSeconds} s ago (more than ${pitr.lagWarningSeconds} s)`,
    );
  }
  if (window.gaps.length > 0) {
    reasons.push(`${window.gaps.length} gap(s) in the archived WAL`);
  }
  const retained = receiver?.slot?.retainedBytes;
  if (pitr && retained != null && retained > pitr.retainedWarningBytes) {
    reasons.push(
      `the slot holds ${retained} bytes of WAL on the server (more than ${pitr.retainedWarningBytes}); see max_slot_wal_keep_size`,
    );
  }
  if (reasons.length > 0) status = 'warning';
  return { ...window, status, reasons, receiver };
}
