import { fstat } from 'node:fs';
import { promisify } from 'node:util';
import { MtagentError, isSystemError } from '../errors';
import { binding } from './binding';
import { piecesOf, type IoPriority } from './io-priority';
import { InFlight } from './in-flight';

const fstatAsync = promisify(fstat);

export interface OpenBlockFileOptions {
  /** Create the file if it does not exist (mode 0600 unless `mode` says otherwise). */
  create?: boolean;
  /** Ask for O_DIRECT; filesystems that refuse it (tmpfs) fall back, and `direct` tells which you got. */
  direct?: boolean;
  readOnly?: boolean;
  mode?: number;
  /** A regular file found empty is extended (sparse) to this size. */
  size?: number;
  /**
   * Reads and writes reach the disk in pieces of at most this many bytes (a
   * multiple of 4096), one after another. For I/O that must not hold back
   * other I/O waiting at the same disk (see BACKGROUND_IO_PIECE_BYTES).
   */
  maxIoBytes?: number;
  /** With maxIoBytes: background I/O, which gives way to this scheduler's foreground I/O between pieces. */
  priority?: IoPriority;
}

/**
 * A file or block device open for positional I/O through the addon. Every
 * call runs off the JavaScript thread; several may be in flight. `close()`
 * waits for them, so no thread ever uses a descriptor after it is closed.
 */
export class BlockFile {
  readonly path: string;
  readonly fd: number;
  /** Whether O_DIRECT is in force: buffers, lengths and offsets must then be 4096-aligned. */
  readonly direct: boolean;
  readonly blockDevice: boolean;
  /** Size at open: the device's size, or the file's length. */
  readonly sizeAtOpen: number;
  /** The most one system call reads or writes; 0: no limit. */
  readonly maxIoBytes: number;

  private readonly inFlight = new InFlight();
  private closed = false;
  private readonly priority: IoPriority | null;

  private constructor(path: string, fd: number, direct: boolean, blockDevice: boolean, size: number, maxIoBytes: number, priority: IoPriority | null) {
    this.path = path;
    this.fd = fd;
    this.direct = direct;
    this.blockDevice = blockDevice;
    this.sizeAtOpen = size;
    this.maxIoBytes = maxIoBytes;
    this.priority = priority;
  }

  static async open(path: string, options: OpenBlockFileOptions = {}): Promise<BlockFile> {
    const { maxIoBytes = 0, priority = null, ...raw } = options;
    if (!Number.isInteger(maxIoBytes) || maxIoBytes < 0 || maxIoBytes % 4096 !== 0) {
      throw new MtagentError('ERR_BAD_OPTIONS', `maxIoBytes ${maxIoBytes} must be a non-negative multiple of 4096`);
    }
    const r = await binding.open(path, raw);
    return new BlockFile(path, r.fd, r.direct, r.blockDevice, r.size, maxIoBytes, priority);
  }

  /** Writes all buffers back to back at `offset`; resolves with the byte count. */
  writev(buffers: readonly Buffer[], offset: number): Promise<number> {
    if (!this.givesWay()) return this.track(() => binding.pwritev(this.fd, buffers, offset, this.maxIoBytes));
    return this.track(() => this.writePieces(buffers, offset));
  }

  /**
   * Writes `buffer` at `offset` and makes it durable (fdatasync); resolves
   * with the byte count. One call on a pool thread does both, so the flush
   * does not wait for the JavaScript thread to come round between them.
   * Background I/O that gives way goes piece by piece, then flushes.
   */
  writeDurable(buffer: Buffer, offset: number): Promise<number> {
    if (!this.givesWay()) return this.track(() => binding.pwritev(this.fd, [buffer], offset, this.maxIoBytes, true));
    return this.track(async () => {
      const done = await this.writePieces([buffer], offset);
      await this.priority?.giveWay();
      await binding.fdatasync(this.fd);
      return done;
    });
  }

  private async writePieces(buffers: readonly Buffer[], offset: number): Promise<number> {
    let done = 0;
    for (const piece of piecesOf(buffers, this.maxIoBytes)) {
      await this.priority?.giveWay();
      done += await binding.pwritev(this.fd, piece, offset + done, 0);
    }
    return done;
  }

  write(buffer: Buffer, offset: number): Promise<number> {
    return this.writev([buffer], offset);
  }

  /** Fills `buffer` from `offset`; fewer bytes only at the end of the file. */
  read(buffer: Buffer, offset: number): Promise<number> {
    if (!this.givesWay()) return this.track(() => binding.pread(this.fd, buffer, offset, this.maxIoBytes));
    return this.track(async () => {
      let done = 0;
      while (done < buffer.length) {
        await this.priority?.giveWay();
        const want = Math.min(this.maxIoBytes, buffer.length - done);
        const got = await binding.pread(this.fd, buffer.subarray(done, done + want), offset + done, 0);
        done += got;
        if (got < want) break;
      }
      return done;
    });
  }

  datasync(): Promise<void> {
    if (!this.givesWay()) return this.track(() => binding.fdatasync(this.fd));
    return this.track(async () => {
      await this.priority?.giveWay();
      await binding.fdatasync(this.fd);
    });
  }

  /** Background I/O (maxIoBytes and a priority set) goes piece by piece from here while it is to give way to foreground I/O. */
  private givesWay(): boolean {
    return this.maxIoBytes > 0 && this.priority !== null && this.priority.givingWay;
  }

  sync(): Promise<void> {
    return this.track(() => binding.fsync(this.fd));
  }

  /** Reserves blocks so later writes in the range cannot fail for space. */
  allocate(offset: number, length: number): Promise<void> {
    return this.track(() => binding.fallocate(this.fd, offset, length));
  }

  /** Frees the blocks of the range; reads there return zeros, the size stays. */
  punchHole(offset: number, length: number): Promise<void> {
    return this.track(() => binding.punchHole(this.fd, offset, length));
  }

  /** The next offset at or after `offset` that holds data, or -1 past the last data (SEEK_DATA). */
  seekData(offset: number): Promise<number> {
    return this.track(() => binding.seekData(this.fd, offset));
  }

  /** The next hole at or after `offset` (SEEK_HOLE); the end of the file counts as one. */
  seekHole(offset: number): Promise<number> {
    return this.track(() => binding.seekHole(this.fd, offset));
  }

  /**
   * Takes the exclusive advisory lock (flock) on this descriptor without
   * waiting: false if another open file description holds it.
   */
  tryLock(): boolean {
    if (this.closed) throw new MtagentError('ERR_FILE_CLOSED', `${this.path} is closed`);
    return binding.flock(this.fd);
  }

  /** The current size: BLKGETSIZE64 for a device, the length for a file. */
  size(): Promise<number> {
    if (this.blockDevice) return this.track(() => binding.blockDeviceSize(this.fd));
    return this.track(async () => (await fstatAsync(this.fd)).size);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.inFlight.idle();
    await binding.close(this.fd).catch((err: unknown) => {
      throw this.withPath(err);
    });
  }

  private async track<T>(op: () => Promise<T>): Promise<T> {
    if (this.closed) throw new MtagentError('ERR_FILE_CLOSED', `${this.path} is closed`);
    try {
      return await this.inFlight.run(op);
    } catch (err) {
      throw this.withPath(err);
    }
  }

  private withPath(err: unknown): unknown {
    if (isSystemError(err) && err.path === undefined) {
      err.path = this.path;
      err.message = `${err.message} '${this.path}'`;
    }
    return err;
  }
}
