// The one check of a stream item against its pair, whoever hands it over (a
// replication connection, a test, the benchmark): a write's length,
// alignment, bounds and CRC, a time and a tag name that can be kept, and the
// seq that must come next. What fails it is refused with its code, and the
// items before it are kept.
import type { StreamItem } from '../journal/items';
import { crc32c } from '../native';
import { MAX_TAG_NAME, MAX_WRITE_BYTES } from '../protocol/constants';
import { EngineError } from './errors';

/** What an item is checked against. */
export interface ItemContext {
  pairId: string;
  /** The last seq accepted: the next item must be one more. */
  lastSeq: number;
  sectorBytes: number;
  diskBytes: number;
}

/** Why a write of `length` bytes at `offset` cannot go on the disk, or null. */
export function writeProblem(offset: number, length: number, sectorBytes: number, diskBytes: number): string | null {
  if (length === 0 || length > MAX_WRITE_BYTES) return `length ${length} is not in 1..${MAX_WRITE_BYTES}`;
  if (offset % sectorBytes !== 0 || length % sectorBytes !== 0) return `offset ${offset} and length ${length} must be multiples of ${sectorBytes}`;
  if (offset + length > diskBytes) return `${offset}+${length} is past the end of the ${diskBytes}-byte disk`;
  return null;
}

/**
 * The refusal for `item`, or null. A bad record (`bad-record`) is named
 * before a seq out of order (`seq-gap`), as the wire protocol has it.
 */
export function checkItem(c: ItemContext, item: StreamItem): EngineError | null {
  const at = `pair ${c.pairId} seq ${item.seq}`;
  if (item.kind === 'write') {
    const problem = writeProblem(item.offset, item.data.length, c.sectorBytes, c.diskBytes);
    if (problem !== null) return new EngineError('bad-record', `${at}: ${problem}`, c.pairId, item.seq);
    if (item.crc32c !== undefined && crc32c(item.data) !== item.crc32c) return new EngineError('bad-record', `${at}: crc32c does not match the payload`, c.pairId, item.seq);
  } else if (item.kind === 'tag' && (item.name.length === 0 || item.name.length > MAX_TAG_NAME)) {
    return new EngineError('bad-record', `${at}: tag name must be 1..${MAX_TAG_NAME} characters`, c.pairId, item.seq);
  }
  if (!Number.isSafeInteger(item.seq) || item.seq !== c.lastSeq + 1) {
    return new EngineError('seq-gap', `pair ${c.pairId}: expected seq ${c.lastSeq + 1}, got ${item.seq}`, c.pairId, item.seq);
  }
  if (!Number.isSafeInteger(item.time) || item.time < 0) return new EngineError('bad-record', `${at}: bad time`, c.pairId, item.seq);
  return null;
}
