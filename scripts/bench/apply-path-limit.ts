// What the disk allows the agent at most, for its I/O per byte received: the
// ingest log's write and flush, then the applier's before-image read, undo
// write and flush, and target write and flush. The same I/O as the agent
// issues it (the addon, O_DIRECT, the applier's in 1 MiB pieces, cycles of
// 8 MiB; the undo log in new preallocated files, as before any history has
// left the window and its segments are recycled, the target rewritten in
// place), with the stages overlapped as far as their order allows, and no
// CPU spent on anything else. The agent cannot go faster than this; the
// ingest benchmark divides its rates by it.
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { BACKGROUND_IO_PIECE_BYTES, BlockFile, alignedBuffer } from '../../src/native';
import { MiB, secondsSince } from './stats';

export interface ApplyPathLimit {
  /** Bytes received per second that the disk keeps up with, all four passes done. */
  bytesPerSecond: number;
}

const CYCLE_BYTES = 8 * MiB;
/** The ingest log's group commit: one write and flush per batch. */
const BATCH_BYTES = MiB;
const TARGET_BYTES = 512 * MiB;
const INGEST_BYTES = 256 * MiB;
const UNDO_SEGMENT_BYTES = 64 * MiB;

/** A file of `bytes` written whole with `chunk` over and over (O_DIRECT) and flushed, left open. */
export async function prewritten(path: string, bytes: number, chunk: Buffer, maxIoBytes: number): Promise<BlockFile> {
  const f = await BlockFile.open(path, { create: true, direct: true, maxIoBytes });
  for (let at = 0; at < bytes; at += chunk.length) await f.write(chunk, at);
  await f.datasync();
  return f;
}

/** Runs the agent's I/O for about `seconds` in `dir` (on the retention filesystem) and reports the rate. */
export async function measureApplyPathLimit(dir: string, seconds: number): Promise<ApplyPathLimit> {
  const work = join(dir, `apply-path-${process.pid}`);
  mkdirSync(work, { recursive: true });
  const data = alignedBuffer(CYCLE_BYTES);
  data.fill(0x5a);
  const before = alignedBuffer(CYCLE_BYTES, false);
  const ingest = await prewritten(join(work, 'ingest.log'), INGEST_BYTES, data, 0);
  const target = await prewritten(join(work, 'target.img'), TARGET_BYTES, data, BACKGROUND_IO_PIECE_BYTES);
  let undo: BlockFile | null = null;
  let undoSegment = 0;
  let undoAt = UNDO_SEGMENT_BYTES;
  const nextUndo = async (): Promise<BlockFile> => {
    if (undo !== null && undoAt + CYCLE_BYTES <= UNDO_SEGMENT_BYTES) return undo;
    await undo?.close();
    const f = await BlockFile.open(join(work, `${undoSegment++}.undo`), { create: true, direct: true, maxIoBytes: BACKGROUND_IO_PIECE_BYTES });
    await f.allocate(0, UNDO_SEGMENT_BYTES);
    undo = f;
    undoAt = 0;
    return f;
  };
  try {
    let received = 0;
    let cycles = 0;
    let landing: Promise<void> = Promise.resolve();
    const start = process.hrtime.bigint();
    while (secondsSince(start) < seconds) {
      const region = (cycles * CYCLE_BYTES) % TARGET_BYTES;
      const ingestAt = (cycles * CYCLE_BYTES) % INGEST_BYTES;
      // The next cycle arrives while this one is applied: its batches are written and flushed one by one.
      const arriving = (async () => {
        for (let b = 0; b < CYCLE_BYTES; b += BATCH_BYTES) {
          await ingest.writeDurable(data.subarray(b, b + BATCH_BYTES), ingestAt + b);
        }
      })();
      // Stage A: before-images read and made durable; stage B of the previous cycle lands meanwhile.
      await target.read(before, region);
      const u = await nextUndo();
      await u.write(before, undoAt);
      undoAt += CYCLE_BYTES;
      await u.datasync();
      await landing;
      landing = (async () => {
        await target.write(data, region);
        await target.datasync();
      })();
      await arriving;
      received += CYCLE_BYTES;
      cycles++;
    }
    await landing;
    return { bytesPerSecond: received / secondsSince(start) };
  } finally {
    await (undo as BlockFile | null)?.close();
    await ingest.close();
    await target.close();
    rmSync(work, { recursive: true, force: true });
  }
}
