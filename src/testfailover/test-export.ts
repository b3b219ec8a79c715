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

  writeZeroes(offset: number, length: number, fua: boolean): Promise<void> {
    return this.serialized(async () => {
      const end = offset + length;
      const innerFrom = Math.ceil(offset / SCRATCH_BLOCK) * SCRATCH_BLOCK;
      const innerTo = Math.min(end, Math.floor(end / SCRATCH_BLOCK) * SCRATCH_BLOCK);
      // The whole blocks read as zeros without being written; the ends of the range are written.
      if (innerTo > innerFrom) await this.guard(() => this.scratch.zero(innerFrom, innerTo - innerFrom, false));
      if (innerFrom > offset) await this.writeNow(offset, Buffer.alloc(Math.min(innerFrom, end) - offset), false);
      if (end > Math.max(innerTo, innerFrom)) await this.writeNow(Math.max(innerTo, innerFrom), Buffer.alloc(end - Math.max(innerTo, innerFrom)), false);
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
