// Numbers of the wire protocol (docs/protocol.md).
export const PROTOCOL_VERSION = 1;
export const REPLICATE_PATH = '/v1/replicate';
export const DEFAULT_PORT = 9443;
/** Binary record header: kind, flags, reserved, stream, seq, offset, length, crc32c, time. */
export const WIRE_RECORD_HEADER_BYTES = 40;
export const WIRE_KIND_WRITE = 1;
export const WIRE_FLAG_RESYNC = 1;
export const MAX_WRITE_BYTES = 4 * 1024 * 1024;
/** The agent's WebSocket max payload: process servers send messages of up to 64 MiB. */
export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
/** What a client may keep unacknowledged (announced in `welcome`). */
export const WINDOW_BYTES = 64 * 1024 * 1024;
export const HELLO_TIMEOUT_MS = 10_000;
/**
 * The most a peer may send before its hello is accepted: a hello is a few
 * hundred bytes. Small, since compressed bytes inflate up to a thousandfold.
 */
export const MAX_HANDSHAKE_BYTES = 4096;
export const ACK_INTERVAL_MS = 200;
export const MAX_TAG_NAME = 128;
export const MAX_CHECKSUM_BLOCKS = 16384;
export const MIN_CHECKSUM_BLOCK = 4096;
export const MAX_CHECKSUM_BLOCK = 4 * 1024 * 1024;
export const PAIR_ID = /^[A-Za-z0-9._-]{1,64}$/;

export const CloseCode = {
  normal: 1000,
  tryAgainLater: 1013,
  badRequest: 4400,
  authFailed: 4401,
  helloTimeout: 4408,
  internal: 4500,
} as const;
