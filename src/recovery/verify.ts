// `mtagent verify PAIR`: reads the pair's retention end to end, checks every
// CRC, the seq chain and the catalog, and names the first bad place.
import { join } from 'node:path';
import type { HistorySource } from './history';
import { JournalCorruptError } from '../journal/errors';
import { isItemRecord } from '../journal/items';
import { RecordKind, isBeforeImage } from '../journal/record';
import { scanLog, segmentFileName } from '../journal/segment-log';

export interface VerifyResult {
  pair: string;
  ok: boolean;
  /** The first bad place: file and offset, or the catalog row. */
  problem: string | null;
  segments: number;
  records: number;
  bytes: number;
}

export async function verifyPair(
  source: HistorySource,
  pairId: string,
  options: { signal?: AbortSignal; onProgress?: (phase: 'verify', done: number, total: number) => void } = {},
): Promise<VerifyResult> {
  const { signal, onProgress } = options;
  // Everything compared is taken at one moment, while replication may go on:
  // the logs are read up to their durable ends of that moment.
  const hold = source.holdForReading(pairId);
  const history = source.history(pairId);
  const rows = source.indexedSegments(pairId);
  const failedOver = history.failedOver;
  const dir = history.undo.dir;
  const result: VerifyResult = { pair: pairId, ok: true, problem: null, segments: 0, records: 0, bytes: 0 };
  const fail = (problem: string): VerifyResult => ({ ...result, ok: false, problem });
  // Damage found while reading a log is the answer; any other error is raised.
  const failOnDamage = (err: unknown): VerifyResult => {
    if (err instanceof JournalCorruptError) return fail(`${err.file} offset ${err.fileOffset}: ${err.reason}`);
    throw err;
  };
  try {
    // The shared ingest log first: its segments are kept from being recycled
    // only while it is read (it is short; the undo history may be long).
    try {
      await scanLog(source.ingestDir, 'log', () => signal?.throwIfAborted(), 0, hold.ingestEnd);
    } catch (err) {
      return failOnDamage(err);
    } finally {
      hold.releaseIngest();
    }
    const scanned = new Map<number, { prevSeq: number; firstSeq: number | null; lastSeq: number | null; lastTime: number | null }>();
    // Progress in bytes of the undo segments, which are all of one size: those read, and where in the current one.
    const sizes = new Map(history.undo.segments().map((s) => [s.segment, s.bytes]));
    const totalBytes = [...sizes.values()].reduce((n, b) => n + b, 0);
    let before = 0;
    let current = -1;
    let expectSeq: number | null = null;
    let chainError: string | null = null;
    try {
      await scanLog(dir, 'undo', (batch) => {
        signal?.throwIfAborted();
        if (batch.segment !== current) {
          if (current >= 0) before += sizes.get(current) ?? 0;
          current = batch.segment;
        }
        onProgress?.('verify', Math.min(totalBytes, before + batch.fileOffset + batch.bytes), totalBytes);
        const place = `${join(dir, segmentFileName(batch.segment, 'undo'))} offset ${batch.fileOffset}`;
        for (const r of batch.records) {
          result.bytes += r.size;
          if (r.kind === RecordKind.SegmentStart) {
            scanned.set(batch.segment, { prevSeq: r.seq, firstSeq: null, lastSeq: null, lastTime: null });
            if (expectSeq !== null && r.seq !== expectSeq - 1 && chainError === null) {
              chainError = `${place}: segment starts after seq ${r.seq}, but the previous segment ended at seq ${expectSeq - 1}`;
            }
            continue;
          }
          if (!isBeforeImage(r.kind) && !isItemRecord(r)) continue;
          result.records++;
          const s = scanned.get(batch.segment);
          if (!s) {
            chainError ??= `${place}: records before the segment's start record`;
            continue;
          }
          if (expectSeq !== null && r.seq !== expectSeq && chainError === null) chainError = `${place}: seq ${r.seq} where ${expectSeq} was expected`;
          expectSeq = r.seq + 1;
          s.firstSeq ??= r.seq;
          s.lastSeq = r.seq;
          s.lastTime = r.time;
        }
      }, 0, hold.undoEnd);
    } catch (err) {
      return failOnDamage(err);
    }
    result.segments = scanned.size;
    if (chainError !== null) return fail(chainError);
    // The catalog's rows for the two newest segments are written after each
    // apply step, so they may trail the log by a step: a row there may end
    // earlier, and the newest segment may have no row yet.
    const newest = [...scanned.keys()].slice(-2);
    for (const row of rows) {
      const s = scanned.get(row.segment);
      if (!s) return fail(`catalog lists undo segment ${row.segment} of ${pairId}, which is not on the retention volume`);
      const trailing = newest.includes(row.segment);
      const lastMatches = trailing ? (row.lastSeq ?? -1) <= (s.lastSeq ?? -1) : s.lastSeq === row.lastSeq;
      const firstMatches = s.firstSeq === row.firstSeq || (trailing && row.firstSeq === null);
      if (s.prevSeq !== row.prevSeq || !lastMatches || !firstMatches) {
        return fail(`catalog row for undo segment ${row.segment} of ${pairId} says seq ${row.firstSeq}..${row.lastSeq} after ${row.prevSeq}, the log has ${s.firstSeq}..${s.lastSeq} after ${s.prevSeq}`);
      }
    }
    for (const n of scanned.keys()) {
      if (!rows.some((r) => r.segment === n) && n !== newest[newest.length - 1]) return fail(`undo segment ${n} of ${pairId} is missing from the catalog`);
    }
    const first = [...scanned.values()][0];
    if (first && first.prevSeq !== history.oldest.seq) {
      return fail(`the oldest undo segment starts after seq ${first.prevSeq}, but the agent reports the oldest point as seq ${history.oldest.seq}`);
    }
    if (history.targetSeq > 0 && (expectSeq ?? history.oldest.seq + 1) - 1 < history.targetSeq && !failedOver) {
      return fail(`the undo log ends at seq ${(expectSeq ?? 1) - 1}, but seq ${history.targetSeq} is applied to the target`);
    }
    return result;
  } finally {
    hold.release();
  }
}
