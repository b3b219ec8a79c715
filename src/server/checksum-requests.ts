// Checksum requests for delta resync: one SHA-256 per block of the target's
// content, reflecting every item the stream sent before the request. Items
// sent after it wait (accepted, not yet journaled) until it is answered.
import type { Engine } from '../engine/engine';
import { EngineError } from '../engine/errors';
import { MAX_CHECKSUM_BLOCK, MAX_CHECKSUM_BLOCKS, MIN_CHECKSUM_BLOCK } from '../protocol/constants';
import type { ChecksumsRequest, ChecksumsResponse } from '../protocol/messages';
import { blockChecksums } from './checksums';
import type { StreamSession } from './stream-table';

/** Why a request cannot be answered as asked, or null. */
export function checksumRequestProblem(msg: ChecksumsRequest, st: Pick<StreamSession, 'sectorBytes' | 'diskBytes'>): string | null {
  const blocks = Math.ceil(msg.length / msg.blockBytes);
  if (msg.blockBytes < MIN_CHECKSUM_BLOCK || msg.blockBytes > MAX_CHECKSUM_BLOCK || (msg.blockBytes & (msg.blockBytes - 1)) !== 0) {
    return `blockBytes must be a power of two from ${MIN_CHECKSUM_BLOCK} to ${MAX_CHECKSUM_BLOCK}`;
  }
  if (msg.length === 0) return 'length must be greater than 0';
  if (blocks > MAX_CHECKSUM_BLOCKS) return `at most ${MAX_CHECKSUM_BLOCKS} blocks per request (asked for ${blocks})`;
  if (msg.offset % st.sectorBytes !== 0) return `offset must be a multiple of ${st.sectorBytes}`;
  if (msg.offset + msg.length > st.diskBytes) return `${msg.offset}+${msg.length} is past the end of the ${st.diskBytes}-byte disk`;
  return null;
}

/**
 * The answer, once everything the stream sent up to `throughSeq` is durable
 * and on the target. Throws when it cannot be computed (the target is gone).
 */
export async function answerChecksums(engine: Engine, st: StreamSession, msg: ChecksumsRequest, throughSeq: number): Promise<ChecksumsResponse> {
  await Promise.all([...st.pending]);
  await engine.waitApplied(st.pairId, throughSeq);
  const target = engine.history(st.pairId).target;
  if (target === null) throw new EngineError('target-unavailable', `the target of ${st.pairId} is unavailable: no checksums can be computed`, st.pairId);
  const sha256 = await blockChecksums(target, st.diskBytes, msg.offset, msg.length, msg.blockBytes);
  return { type: 'checksums', stream: st.id, id: msg.id, offset: msg.offset, blockBytes: msg.blockBytes, sha256 };
}
