// An NBD export held in memory, for testing the server against real clients.
import { NbdError, type NbdExport } from '../../src/nbd/export';
import { Errno } from '../../src/nbd/protocol';

export class MemoryExport implements NbdExport {
  readonly data: Buffer;
  flushes = 0;
  /** Writes past this many bytes written in all are answered ENOSPC. */
  quotaBytes = Number.POSITIVE_INFINITY;
  private written = 0;

  constructor(
    readonly name: string,
    readonly sizeBytes: number,
    readonly minBlockBytes = 512,
    readonly readOnly = false,
  ) {
    this.data = Buffer.alloc(sizeBytes);
  }

  async read(offset: number, length: number): Promise<Buffer> {
    return Buffer.from(this.data.subarray(offset, offset + length));
  }

  async write(offset: number, data: Buffer): Promise<void> {
    if (this.written + data.length > this.quotaBytes) throw new NbdError(Errno.ENOSPC, 'quota');
    this.written += data.length;
    data.copy(this.data, offset);
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    this.data.fill(0, offset, offset + length);
  }

  async flush(): Promise<void> {
    this.flushes++;
  }

}
