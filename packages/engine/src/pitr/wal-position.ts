/**
 * WAL positions and segment names, as PostgreSQL computes them: an LSN is a 64-bit byte
 * position printed `hi/lo` in hex; segment `n` of timeline `t` is named by `t` and `n` split into
 * the 4 GiB "log id" and the segment within it, each as 8 hex digits.
 */

export function parseLsn(text: string): bigint {
  const match = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text);
  if (!match) throw new Error(`not an LSN: ${JSON.stringify(text.slice(0, 40))}`);
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

function segmentsPerLogId(segmentSize: number): bigint {
  return 0x100000000n / BigInt(segmentSize);
}

export interface SegmentName {
  timeline: number;
  segno: bigint;
}

export function segmentName(timeline: number, segno: bigint, segmentSize: number): string {
  const perId = segmentsPerLogId(segmentSize);
  const hex = (value: bigint | number) => value.toString(16).toUpperCase().padStart(8, '0');
  return `${hex(timeline)}${hex(segno / perId)}${hex(segno % perId)}`;
}

export function parseSegmentName(name: string, segmentSize: number): SegmentName {
  if (!/^[0-9A-F]{24}$/.test(name)) throw new Error(`not a WAL segment name: ${name.slice(0, 40)}`);
  const timeline = Number.parseInt(name.slice(0, 8), 16);
  const logId = BigInt(`0x${name.slice(8, 16)}`);
  const seg = BigInt(`0x${name.slice(16, 24)}`);
  const perId = segmentsPerLogId(segmentSize);
  // PostgreSQL never writes such a name: it would alias a segment of the next log id, and means
  // the name is read with the wrong segment size.
  if (seg >= perId) {
    throw new Error(`not a WAL segment name for ${segmentSize}-byte segments: ${name}`);
  }
  return { timeline, segno: logId * perId + seg };
}

/** The segment an LSN falls in. */
export function segmentOf(lsn: bigint, segmentSize: number): bigint {
  return lsn / BigInt(segmentSize);
}

/** The first LSN after a segment: everything before it is in that segment or an earlier one. */
export function segmentEnd(segno: bigint, segmentSize: number): bigint {
  return (segno + 1n) * BigInt(segmentSize);
}

export const isSegmentName = (name: string) => /^[0-9A-F]{24}$/.test(name);
export const isHistoryName = (name: string) => /^[0-9A-F]{8}\.history$/.test(name);
