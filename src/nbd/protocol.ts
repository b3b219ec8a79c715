// The NBD protocol's numbers (the NBD project's doc/proto.md): the fixed
// newstyle handshake, its options and replies, the transmission phase's
// requests and simple replies. Every field is big-endian.

export const NBD_MAGIC = 0x4e42444d41474943n; // "NBDMAGIC"
export const IHAVEOPT = 0x49484156454f5054n; // "IHAVEOPT"
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;

/** Handshake flags (server) and client flags. */
export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;

export const Opt = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
} as const;

const ERR = 0x80000000;
export const Rep = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  ERR_UNSUP: ERR + 1,
  ERR_POLICY: ERR + 2,
  ERR_INVALID: ERR + 3,
  ERR_TLS_REQD: ERR + 5,
  ERR_UNKNOWN: ERR + 6,
  ERR_SHUTDOWN: ERR + 7,
} as const;

export const Info = {
  EXPORT: 0,
  NAME: 1,
  DESCRIPTION: 2,
  BLOCK_SIZE: 3,
} as const;

/** Transmission flags of an export. */
export const TFlag = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  CAN_MULTI_CONN: 1 << 8,
} as const;

export const Cmd = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  WRITE_ZEROES: 6,
} as const;

/** Command flags. */
export const CmdFlag = {
  FUA: 1 << 0,
  NO_HOLE: 1 << 1,
} as const;

/** errno values NBD replies carry. */
export const Errno = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

export const REQUEST_BYTES = 28;
export const OPTION_HEADER_BYTES = 16;

/** The largest request served (and advertised as the maximum block size). */
export const MAX_REQUEST_BYTES = 32 * 1024 * 1024;
/** Option data larger than this ends the connection: no option we serve needs more than a name and a few info requests. */
export const MAX_OPTION_BYTES = 64 * 1024;

export interface Request {
  flags: number;
  type: number;
  handle: Buffer;
  offset: number;
  length: number;
}

export function decodeRequest(b: Buffer): Request | null {
  if (b.readUInt32BE(0) !== REQUEST_MAGIC) return null;
  const offset = b.readBigUInt64BE(16);
  return {
    flags: b.readUInt16BE(4),
    type: b.readUInt16BE(6),
    handle: Buffer.from(b.subarray(8, 16)),
    // Past 2^53 is past any disk here: kept as a number that fails the bounds check.
    offset: offset > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(offset),
    length: b.readUInt32BE(24),
  };
}

export function simpleReply(handle: Buffer, error: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
  b.writeUInt32BE(error, 4);
  handle.copy(b, 8);
  return b;
}

export function optionReply(option: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(20 + data.length);
  b.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  b.writeUInt32BE(option, 8);
  b.writeUInt32BE(type >>> 0, 12);
  b.writeUInt32BE(data.length, 16);
  data.copy(b, 20);
  return b;
}

/** An error reply carrying a message for a person. */
export function optionError(option: number, type: number, message: string): Buffer {
  return optionReply(option, type, Buffer.from(message, 'utf8'));
}

export function infoExport(sizeBytes: number, flags: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(Info.EXPORT, 0);
  b.writeBigUInt64BE(BigInt(sizeBytes), 2);
  b.writeUInt16BE(flags, 10);
  return b;
}

export function infoBlockSize(min: number, preferred: number, max: number): Buffer {
  const b = Buffer.alloc(14);
  b.writeUInt16BE(Info.BLOCK_SIZE, 0);
  b.writeUInt32BE(min, 2);
  b.writeUInt32BE(preferred, 6);
  b.writeUInt32BE(max, 10);
  return b;
}

export function infoName(name: string): Buffer {
  const n = Buffer.from(name, 'utf8');
  const b = Buffer.alloc(2 + n.length);
  b.writeUInt16BE(Info.NAME, 0);
  n.copy(b, 2);
  return b;
}
