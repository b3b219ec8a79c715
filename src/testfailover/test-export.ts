// What a test failover serves: the disk at its point (PointView) with the
// test's own writes over it (Scratch), as an NBD export. Writes are laid in
// whole 4 KiB blocks: a write that covers part of a block first takes the
// rest of it as the test sees it. They go one at a time, so two writes into
// one block never interleave their read and write.
import { NbdError, type NbdExport } from '../nbd/export';
import { Errno } from '../nbd/protocol';
import type { PointView } from '../recovery/point-view';
import { SCRATCH_BLOCK, Scratch, ScratchFullError } from './scratch';

export class TestExport implements NbdExport {
  private writing: Promise<unknown> = Promise.resolve();

  constructor(
    readonly name: string,
    private readonly view: PointView,
    readonly scratch: Scratch,
    readonly minBlockBytes: number,
    readonly readOnly: boolean,
  ) {}

  get sizeBytes(): number {
    return this.view.sizeBytes;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const out = await this.view.read(offset, length);
    await this.overlayScratch(out, offset);
    return out;
  }

  /** Lays the test's own blocks over `out` (which holds the disk from `offset`). */
  private async overlayScratch(out: Buffer, offset: number): Promise<void> {
    const end = offset + out.length;
    const first = Math.floor(offset / SCRATCH_BLOCK);
    const last = Math.ceil(end / SCRATCH_BLOCK);
    const runs: Array<[number, number]> = [];
    for (let b = first; b < last; b++) {
      if (!this.scratch.has(b)) continue;
      const run = runs[runs.length - 1];
      if (run && run[1] === b) run[1] = b + 1;
      else runs.push([b, b + 1]);
    }
    await Promise.all(
      runs.map(async ([from, to]) => {
        const start = Math.max(offset, from * SCRATCH_BLOCK);
        const stop = Math.min(end, to * SCRATCH_BLOCK);
        const buf = Buffer.allocUnsafe(stop - start);
        await this.scratch.read(buf, start);
        buf.copy(out, start - offset);
      }),
    );
  }

  write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    return this.serialized(() => this.writeNow(offset, data, fua));
  }

  /**
   * TRIM and WRITE_ZEROES: whole blocks become holes over the point (no bytes
   * stored, nothing counted against the quota); the partial blocks at either
   * end are written. The quota is checked for those ends before anything
   * changes, so a request refused changes nothing.
   */
  writeZeroes(offset: number, length: number, fua: boolean): Promise<void> {
    return this.serialized(async () => {
      const end = offset + length;
      const innerFrom = Math.ceil(offset / SCRATCH_BLOCK) * SCRATCH_BLOCK;
      const innerTo = Math.min(end, Math.floor(end / SCRATCH_BLOCK) * SCRATCH_BLOCK);
      const head: [number, number] | null = innerFrom > offset ? [offset, Math.min(innerFrom, end)] : null;
      const tailFrom = Math.max(innerTo, innerFrom);
      const tail: [number, number] | null = end > tailFrom ? [tailFrom, end] : null;
      const edgeBlocks = new Set([head, tail].filter((r): r is [number, number] => r !== null).map(([from]) => Math.floor(from / SCRATCH_BLOCK)));
      let newBlocks = 0;
      for (const b of edgeBlocks) newBlocks += this.scratch.newDataBlocks(b, 1);
      await this.guard(async () => this.scratch.reserve(newBlocks));
      if (head) await this.writeNow(head[0], Buffer.alloc(head[1] - head[0]), false);
      if (tail) await this.writeNow(tail[0], Buffer.alloc(tail[1] - tail[0]), false);
      if (innerTo > innerFrom) await this.guard(() => this.scratch.zero(innerFrom, innerTo - innerFrom, false));
      if (fua) await this.scratch.flush();
    });
  }

  async flush(): Promise<void> {
    await this.scratch.flush();
  }

  private async writeNow(offset: number, data: Buffer, fua: boolean): Promise<void> {
    const end = offset + data.length;
    const from = Math.floor(offset / SCRATCH_BLOCK) * SCRATCH_BLOCK;
    const to = Math.min(this.sizeBytes, Math.ceil(end / SCRATCH_BLOCK) * SCRATCH_BLOCK);
    let blocks = data;
    if (from !== offset || to !== end) {
      // Copy-on-write: the rest of the first and last blocks as the test sees them now.
      blocks = Buffer.alloc(to - from);
      const edges = [from, Math.max(from, to - SCRATCH_BLOCK)].filter((b, i, all) => all.indexOf(b) === i);
      for (const b of edges) {
        const len = Math.min(SCRATCH_BLOCK, this.sizeBytes - b);
        (await this.read(b, len)).copy(blocks, b - from);
      }
      data.copy(blocks, offset - from);
    }
    await this.guard(() => this.scratch.write(from, blocks, fua));
  }

  /** The scratch's quota, or the volume, full: said as NBD says it. */
  private async guard(work: () => Promise<void>): Promise<void> {
    try {
      await work();
    } catch (err) {
      if (err instanceof ScratchFullError) throw new NbdError(Errno.ENOSPC, err.message);
      // The retention volume itself full, before the quota was.
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') throw new NbdError(Errno.ENOSPC, `the retention volume is full: ${(err as Error).message}`);
      throw err;
    }
  }

  private serialized<T>(work: () => Promise<T>): Promise<T> {
    const next = this.writing.then(work);
    this.writing = next.catch(() => undefined);
    return next;
  }
}
