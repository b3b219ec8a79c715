// Rebuilding a pair's disk at a point: copy the target (which holds the
// latest applied state), then lay the before-images back (rollback.ts).
import { userInfo } from 'node:os';
import { existsSync, rmSync, statSync, truncateSync } from 'node:fs';
import { runLimited } from '../apply/target';
import { MtagentError } from '../errors';
import { BlockFile } from '../native';
import type { HistorySource } from './history';
import { copyImage, hashImage, imageOf } from './image';
import { resolvePoint, type ResolvedPoint, type Timeline } from './points';
import { rollBack } from './rollback';

export interface RebuildResult {
  pairId: string;
  seq: number;
  time: number | null;
  path: string;
  sizeBytes: number;
  sha256: string;
  copiedBytes: number;
  undoRecords: number;
  undoBytes: number;
}

export interface RebuildOptions {
  /** Overwrite an existing file or device. */
  force?: boolean;
  onProgress?: (phase: 'copy' | 'rollback' | 'hash', done: number, total: number) => void;
  /** Cancels the rebuild; an image file it created is removed. */
  signal?: AbortSignal;
}

/** What the source knows of a pair's history, for point resolution. */
export function timelineOf(source: HistorySource, pairId: string): Timeline {
  const h = source.history(pairId);
  return {
    pairId,
    oldest: h.oldest,
    historyFloor: h.historyFloor,
    latestSeq: h.targetSeq,
    durableSeq: h.durableSeq,
    durableTime: h.durableTime,
    applyPausedBy: h.applyPausedBy,
    windows: source.resyncWindows(pairId),
    tags: source.tags(pairId),
    undo: h.undo,
  };
}

/**
 * Waits (bounded) until everything durable for the pair is applied, so
 * `latest` means the newest item. Not for a pair whose applying is paused
 * (its target gone, failed over, unconfigured): the points it has not
 * applied are refused, saying why (points.ts).
 */
export async function catchUp(source: HistorySource, pairId: string, timeoutMs = 60_000): Promise<void> {
  const h = source.history(pairId);
  if (h.failedOver || h.target === null || !h.configured || h.applyPausedBy !== null) return;
  await source.waitApplied(pairId, h.durableSeq, timeoutMs);
}

async function openOutput(path: string, sizeBytes: number, force: boolean): Promise<BlockFile> {
  if (existsSync(path)) {
    const st = statSync(path);
    if (!force) throw new MtagentError('output-exists', `${path} already exists; give --force to overwrite it`);
    if (st.isBlockDevice()) {
      const dev = await BlockFile.open(path, {});
      if (dev.sizeAtOpen < sizeBytes) {
        await dev.close();
        throw new MtagentError('output-too-small', `${path} is ${dev.sizeAtOpen} bytes; the disk needs ${sizeBytes}`);
      }
      return dev;
    }
    if (!st.isFile()) throw new MtagentError('output-invalid', `${path} is neither a regular file nor a block device`);
    truncateSync(path, 0);
  }
  try {
    return await BlockFile.open(path, { create: true, size: sizeBytes, mode: 0o600 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EROFS' && code !== 'EPERM') throw err;
    const who = process.getuid?.() === 0 ? 'root' : `user ${userInfo().username}`;
    throw new MtagentError('output-not-writable', `cannot write ${path} (${code}): the agent writes the image as ${who}; give --out a path it may write (with the systemd unit, under its dataDir)`);
  }
}

/** Rebuilds the pair's disk at a resolved point into `outPath` and hashes it. */
export async function rebuildAt(source: HistorySource, point: ResolvedPoint, outPath: string, options: RebuildOptions = {}): Promise<RebuildResult> {
  const pairId = point.pairId;
  const unpin = source.pin(pairId);
  try {
    const before = source.history(pairId);
    if (before.target === null) {
      throw new MtagentError('target-unavailable', `pair ${pairId}: the target is unavailable, and every rebuild starts from it`);
    }
    const size = before.diskBytes || before.target.sizeBytes;
    const created = !existsSync(outPath);
    const out = await openOutput(outPath, size, options.force ?? false);
    let done = false;
    try {
      const copied = await copyImage(before.target, out, size, (n) => options.onProgress?.('copy', n, size), options.signal);
      // Items applied while copying are undone too: their before-images are
      // durable before the target changed. So are those of a step whose writes
      // were landing, not yet counted as applied (rollbackFromSeq).
      const after = source.history(pairId);
      const sink = { writeExtents: (ext: readonly { offset: number; data: Buffer }[]) => runLimited(ext, 8, (e) => out.write(e.data, e.offset)) };
      const stats = await rollBack(after.undo, sink, point.seq, after.rollbackFromSeq, options.signal);
      options.onProgress?.('rollback', stats.bytes, stats.bytes);
      await out.datasync();
      const sha256 = await hashImage(imageOf(out), size, options.signal);
      options.onProgress?.('hash', size, size);
      done = true;
      return { pairId, seq: point.seq, time: point.time, path: outPath, sizeBytes: size, sha256, copiedBytes: copied, undoRecords: stats.records, undoBytes: stats.bytes };
    } finally {
      await out.close();
      // A partial image this rebuild made goes (never a device, nor a file that was there before).
      if (!done && created) rmSync(outPath, { force: true });
    }
  } finally {
    unpin();
  }
}

/** Resolves POINT and rebuilds. */
export async function rebuild(source: HistorySource, pairId: string, spec: string, outPath: string, options: RebuildOptions = {}): Promise<RebuildResult> {
  await catchUp(source, pairId);
  const unpin = source.pin(pairId);
  try {
    const point = await resolvePoint(timelineOf(source, pairId), spec);
    return await rebuildAt(source, point, outPath, options);
  } finally {
    unpin();
  }
}
