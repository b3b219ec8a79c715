import { MtagentError } from '../errors';

/**
 * Codes the engine refuses with. They are the protocol's error codes
 * (docs/protocol.md, Errors), so the endpoint passes them through unchanged.
 */
export type EngineErrorCode =
  | 'unknown-pair'
  | 'size-mismatch'
  | 'failed-over'
  | 'bad-record'
  | 'seq-gap'
  | 'retention-full'
  | 'target-unavailable'
  | 'bad-request'
  | 'superseded'
  | 'not-open';

export class EngineError extends MtagentError {
  readonly pairId: string | null;
  /** The refused item's seq, where one was refused. */
  readonly seq: number | null;

  constructor(code: EngineErrorCode, message: string, pairId: string | null = null, seq: number | null = null) {
    super(code, message);
    this.name = 'EngineError';
    this.pairId = pairId;
    this.seq = seq;
  }
}
