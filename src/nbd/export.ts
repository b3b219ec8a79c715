// What the NBD server serves: a disk of a size, read and written at byte
// offsets. The server validates every request before it calls any of this.

export interface NbdExport {
  readonly name: string;
  readonly sizeBytes: number;
  /** The smallest block a client may address (the pair's sector size). */
  readonly minBlockBytes: number;
  readonly readOnly: boolean;
  read(offset: number, length: number): Promise<Buffer>;
  /** `fua`: durable when it resolves. */
  write(offset: number, data: Buffer, fua: boolean): Promise<void>;
  /** Zeros over the range (TRIM reads as zeros too here). */
  writeZeroes(offset: number, length: number, fua: boolean): Promise<void>;
  /** Every write answered before it is durable when it resolves. */
  flush(): Promise<void>;
}

/** An error an export answers with a particular errno (ENOSPC past a quota, EPERM on a read-only export). */
export class NbdError extends Error {
  constructor(
    readonly errno: number,
    message: string,
  ) {
    super(message);
    this.name = 'NbdError';
  }
}
