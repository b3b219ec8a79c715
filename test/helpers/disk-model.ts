import { createHash } from 'node:crypto';
import type { StreamItem } from '../../src/journal/items';

/**
 * The simple truth the engine is held to: the disk after item `seq` is its
 * first image (zeros, or `base` for a disk in use) with every write up to
 * `seq` laid on in order.
 */
export class DiskModel {
  readonly items: StreamItem[] = [];
  constructor(
    readonly sizeBytes: number,
    private readonly base: Buffer | null = null,
  ) {}

  add(item: StreamItem): void {
    this.items.push(item);
  }

  imageAt(seq: number): Buffer {
    const img = Buffer.alloc(this.sizeBytes);
    this.base?.copy(img);
    for (const it of this.items) {
      if (it.seq > seq) break;
      if (it.kind === 'write') it.data.copy(img, it.offset);
    }
    return img;
  }

  sha256At(seq: number): string {
    return createHash('sha256').update(this.imageAt(seq)).digest('hex');
  }

  /**
   * Whether the state after `seq` can be rebuilt (a pair whose history was
   * neither pruned nor committed): not inside a resync window, nor before the
   * end of one that opens on item 1 (a new pair's initial copy keeps no
   * before-images; seq 0 is the disk before the first item).
   */
  isPoint(seq: number): boolean {
    if (this.inResync(seq)) return false;
    if (this.items[0]?.kind !== 'resync-start') return true;
    const end = this.items.find((it) => it.kind === 'resync-end');
    return end !== undefined && seq >= end.seq;
  }

  /** Whether the state after `seq` lies inside a resync window. */
  inResync(seq: number): boolean {
    let open = false;
    for (const it of this.items) {
      if (it.seq > seq) break;
      if (it.kind === 'resync-start') open = true;
      if (it.kind === 'resync-end') open = false;
    }
    return open;
  }
}
