// Before-images that are all zeros (a region of a fresh disk, never written)
// are kept in the undo log as a length, not as bytes.

const COMPARE_BYTES = 64 * 1024;
const ZERO_CHUNK = Buffer.alloc(COMPARE_BYTES);

/** True when every byte is zero. Data that is not zero usually differs in its first bytes, so this costs little then. */
export function isAllZero(buf: Buffer): boolean {
  for (let at = 0; at < buf.length; at += COMPARE_BYTES) {
    const end = Math.min(buf.length, at + COMPARE_BYTES);
    if (buf.compare(ZERO_CHUNK, 0, end - at, at, end) !== 0) return false;
  }
  return true;
}

let shared = Buffer.alloc(0);

/** `length` zero bytes, shared: for reading only. */
export function zeroImage(length: number): Buffer {
  if (shared.length < length) shared = Buffer.alloc(Math.max(length, 2 * shared.length));
  return shared.subarray(0, length);
}
