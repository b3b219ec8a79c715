// A target disk: a block device, or a regular file holding a disk image
// (created sparse when a size is configured and the file is absent).
import { statSync, type Stats } from 'node:fs';
import { dirname } from 'node:path';
import { fsyncDir } from '../durable-files';
import { MtagentError, isSystemError } from '../errors';
import { BACKGROUND_IO_PIECE_BYTES, BlockFile, DIRECT_ALIGNMENT, isDirectAligned, type IoPriority } from '../native';
import type { Extent } from './overlay';

export class TargetError extends MtagentError {
  readonly path: string;
  constructor(code: 'target-unavailable' | 'size-mismatch' | 'target-invalid', path: string, message: string, cause?: unknown) {
    super(code, message, { cause });
    this.name = 'TargetError';
    this.path = path;
  }
}

export interface TargetSpec {
  path: string;
  /** For an image file: its size, used to create it when absent and checked when present. */
  sizeBytes?: number | null;
  /** The engine's disk scheduler: the target's I/O is background I/O that gives way to it. */
  priority?: IoPriority;
}

/** Several positional writes at once: the extents are disjoint, so order does not matter. */
const MAX_IN_FLIGHT = 8;

export async function runLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      await fn(item);
    }
  });
  await Promise.all(workers);
}

export class TargetDisk {
  readonly path: string;
  readonly sizeBytes: number;
  readonly blockDevice: boolean;
  /** True when this open created the image: its content is all zeros, not the source's. */
  readonly created: boolean;
  private readonly file: BlockFile;
  /**
   * The same disk opened with O_DIRECT, where the filesystem allows it: the
   * applier's aligned reads and writes bypass the page cache, which on a VM
   * is several times slower than the disk. Linux keeps the two coherent.
   */
  private readonly direct: BlockFile | null;
  private readonly identity: { dev: number; ino: number };

  private constructor(path: string, file: BlockFile, direct: BlockFile | null, size: number, created: boolean, identity: { dev: number; ino: number }) {
    this.path = path;
    this.file = file;
    this.direct = direct;
    this.sizeBytes = size;
    this.blockDevice = file.blockDevice;
    this.created = created;
    this.identity = identity;
  }

  static async open(spec: TargetSpec): Promise<TargetDisk> {
    let st: Stats | undefined;
    try {
      st = statSync(spec.path);
    } catch (err) {
      if (!isSystemError(err) || err.code !== 'ENOENT') throw unavailable(spec.path, err);
    }
    const background = { maxIoBytes: BACKGROUND_IO_PIECE_BYTES, ...(spec.priority ? { priority: spec.priority } : {}) };
    let created = false;
    if (st === undefined) {
      if (!spec.sizeBytes) {
        throw new TargetError('target-unavailable', spec.path, `target ${spec.path} does not exist; attach the disk, or give sizeBytes to create an image file`);
      }
      try {
        statSync(dirname(spec.path));
      } catch (err) {
        throw unavailable(spec.path, err);
      }
      created = true;
    } else if (!st.isBlockDevice() && !st.isFile()) {
      throw new TargetError('target-invalid', spec.path, `target ${spec.path} is neither a block device nor a regular file`);
    }
    let file: BlockFile;
    try {
      file = await BlockFile.open(spec.path, { create: created, size: spec.sizeBytes ?? undefined, ...background });
    } catch (err) {
      throw unavailable(spec.path, err);
    }
    if (created) {
      // The image and its name are durable before anything is applied to it:
      // after a power cut the pair is not new any more, and a target gone
      // missing would not be made again.
      try {
        await file.sync();
        fsyncDir(dirname(spec.path));
      } catch (err) {
        await file.close();
        throw unavailable(spec.path, err);
      }
    }
    const size = file.sizeAtOpen;
    if (!file.blockDevice && spec.sizeBytes && size !== spec.sizeBytes) {
      await file.close();
      throw new TargetError('size-mismatch', spec.path, `target ${spec.path} is ${size} bytes but sizeBytes is ${spec.sizeBytes}; it is never truncated or grown`);
    }
    let direct: BlockFile | null = null;
    try {
      direct = await BlockFile.open(spec.path, { direct: true, ...background });
      if (!direct.direct) {
        await direct.close();
        direct = null;
      }
    } catch (err) {
      await file.close();
      throw unavailable(spec.path, err);
    }
    const fst = statSync(spec.path);
    return new TargetDisk(spec.path, file, direct, size, created, { dev: fst.dev, ino: fst.ino });
  }

  /**
   * The granularity the applier rounds its extents to, so that they go
   * through O_DIRECT: 4096 where it is in force, 1 where it is not.
   */
  get ioAlignment(): number {
    return this.direct ? DIRECT_ALIGNMENT : 1;
  }

  /**
   * Whether the path still names the file this handle has open. A moved or
   * detached disk keeps the descriptor valid, so the path is what tells.
   */
  stillAttached(): boolean {
    try {
      const st = statSync(this.path);
      return st.dev === this.identity.dev && st.ino === this.identity.ino;
    } catch {
      return false;
    }
  }

  /** Reads into `buf`; through O_DIRECT when it is aligned memory and the offset a block boundary. */
  async readInto(buf: Buffer, offset: number): Promise<number> {
    const file = this.fileFor(offset, buf);
    return this.io(() => file.read(buf, offset));
  }

  /** Fills `buf` from `offset` (zeros past the end), through O_DIRECT when `buf` is aligned memory. */
  async readFully(buf: Buffer, offset: number): Promise<void> {
    const got = await this.readInto(buf, offset);
    if (got < buf.length) buf.fill(0, got);
  }

  async writeExtents(extents: readonly Extent[]): Promise<void> {
    await runLimited(extents, MAX_IN_FLIGHT, (e) => this.io(() => this.fileFor(e.offset, e.data).write(e.data, e.offset)));
  }

  async flush(): Promise<void> {
    await this.io(() => this.file.datasync());
  }

  seekData(offset: number): Promise<number> {
    return this.io(() => this.file.seekData(offset));
  }

  seekHole(offset: number): Promise<number> {
    return this.io(() => this.file.seekHole(offset));
  }

  async close(): Promise<void> {
    await Promise.all([this.file.close(), this.direct?.close()]);
  }

  /** The O_DIRECT descriptor when it takes this I/O as it is, the buffered one otherwise. */
  private fileFor(offset: number, buf: Buffer): BlockFile {
    return this.direct !== null && offset % DIRECT_ALIGNMENT === 0 && isDirectAligned(buf) ? this.direct : this.file;
  }

  private async io<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      throw unavailable(this.path, err);
    }
  }
}

function unavailable(path: string, err: unknown): TargetError {
  const why = err instanceof Error ? err.message : String(err);
  return new TargetError('target-unavailable', path, `target ${path} is unavailable: ${why}`, err);
}
