// Every way a peer can be wrong, in one place: its code (docs/protocol.md, Errors), what it
// ends, and the close code when it ends the connection.
import { MtagentError } from '../errors';
import { CloseCode } from './constants';

export type ProtocolErrorCode =
  | 'auth-failed'
  | 'protocol-version'
  | 'malformed'
  | 'unknown-pair'
  | 'size-mismatch'
  | 'failed-over'
  | 'bad-request'
  | 'bad-record'
  | 'seq-gap'
  | 'superseded'
  | 'retention-full'
  | 'target-unavailable'
  | 'internal';

/** What an error ends: the connection, one stream, or nothing (a refused request). */
export type ErrorScope = 'connection' | 'stream' | 'request' | 'info';

const SCOPE: Record<ProtocolErrorCode, { scope: ErrorScope; close?: number }> = {
  'auth-failed': { scope: 'connection', close: CloseCode.authFailed },
  'protocol-version': { scope: 'connection', close: CloseCode.badRequest },
  malformed: { scope: 'connection', close: CloseCode.badRequest },
  'unknown-pair': { scope: 'request' },
  'size-mismatch': { scope: 'request' },
  'failed-over': { scope: 'request' },
  'bad-request': { scope: 'request' },
  'bad-record': { scope: 'stream' },
  'seq-gap': { scope: 'stream' },
  superseded: { scope: 'stream' },
  'retention-full': { scope: 'stream' },
  'target-unavailable': { scope: 'info' },
  internal: { scope: 'connection', close: CloseCode.internal },
};

export class ProtocolError extends MtagentError {
  declare readonly code: ProtocolErrorCode;
  readonly scope: ErrorScope;
  readonly closeCode: number | null;
  readonly stream: number | null;
  readonly seq: number | null;

  constructor(code: ProtocolErrorCode, message: string, where: { stream?: number | null; seq?: number | null } = {}) {
    super(code, message);
    this.name = 'ProtocolError';
    const s = SCOPE[code];
    this.scope = s.scope;
    this.closeCode = s.close ?? null;
    this.stream = where.stream ?? null;
    this.seq = where.seq ?? null;
  }

  /** The `error` message sent to the peer. */
  toMessage(): { type: 'error'; code: ProtocolErrorCode; message: string; stream?: number; seq?: number } {
    return {
      type: 'error',
      code: this.code,
      message: this.message,
      ...(this.stream !== null ? { stream: this.stream } : {}),
      ...(this.seq !== null ? { seq: this.seq } : {}),
    };
  }
}

export function isProtocolErrorCode(code: string): code is ProtocolErrorCode {
  return Object.prototype.hasOwnProperty.call(SCOPE, code);
}
