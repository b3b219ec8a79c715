// The streams of a connection (one per opened pair, numbered by the agent),
// and which stream owns each pair across all connections: opening a pair
// that is open elsewhere takes it over, and the stream it had ends with
// `superseded`.
import type { StreamItem } from '../journal/items';
import { ProtocolError } from '../protocol/errors';
import type { ChecksumsRequest } from '../protocol/messages';

/** Whoever holds a stream: told to end it when another connection takes its pair. */
export interface StreamHolder {
  endStream(st: StreamSession, err: ProtocolError): void;
}

export interface StreamSession {
  id: number;
  pairId: string;
  holder: StreamHolder;
  /** The engine's session token for this open. */
  session: number;
  diskBytes: number;
  sectorBytes: number;
  /** durableSeq answered at open: items at or below it are resends, dropped. */
  openDurableSeq: number;
  durableSeq: number;
  ackedSeq: number;
  ended: boolean;
  /** Journaling in progress for this stream. */
  pending: Set<Promise<void>>;
  /**
   * While a checksum request is answered, what arrives after it waits in
   * `backlog`, in order: items (accepted, not yet journaled), and further
   * checksum requests, each answered once the items before it are.
   */
  gated: boolean;
  backlog: BacklogEntry[];
  /** target-unavailable was said on this stream and the target has not come back since. */
  toldTargetGone: boolean;
}

export type BacklogEntry = { items: StreamItem[]; arrived: number } | { checksums: ChecksumsRequest; throughSeq: number };

/** Which stream owns each pair, across the listener's connections. */
export class StreamRegistry {
  private readonly owners = new Map<string, StreamSession>();

  /** Ends the stream that has the pair now, on whatever connection; true if there was one. */
  takeOver(pairId: string): boolean {
    const previous = this.owners.get(pairId);
    if (previous) previous.holder.endStream(previous, new ProtocolError('superseded', `pair ${pairId} was opened on another connection`, { stream: previous.id }));
    return previous !== undefined;
  }

  claim(st: StreamSession): void {
    this.owners.set(st.pairId, st);
  }

  /** Forgets the stream, if it still owns its pair. */
  release(st: StreamSession): void {
    if (this.owners.get(st.pairId) === st) this.owners.delete(st.pairId);
  }

  get(pairId: string): StreamSession | undefined {
    return this.owners.get(pairId);
  }
}

export class StreamTable {
  private readonly streams = new Map<number, StreamSession>();
  /** Streams ended by an error: records still in flight for them are dropped, not malformed. */
  private readonly ended = new Set<number>();
  private nextId = 1;

  constructor(
    private readonly holder: StreamHolder,
    private readonly registry: StreamRegistry,
  ) {}

  /** A new stream for a pair just opened; it owns the pair from here. */
  open(pairId: string, session: number, durableSeq: number, diskBytes: number, sectorBytes: number): StreamSession {
    const st: StreamSession = {
      id: this.nextId++,
      pairId,
      holder: this.holder,
      session,
      diskBytes,
      sectorBytes,
      openDurableSeq: durableSeq,
      durableSeq,
      ackedSeq: durableSeq,
      ended: false,
      pending: new Set(),
      gated: false,
      backlog: [],
      toldTargetGone: false,
    };
    this.streams.set(st.id, st);
    this.registry.claim(st);
    return st;
  }

  /** The stream a message names; null if it ended for an error (the message is dropped); `malformed` if it never was. */
  find(id: number, seq: number | null): StreamSession | null {
    const st = this.streams.get(id);
    if (st && !st.ended) return st;
    if (this.ended.has(id)) return null;
    throw new ProtocolError('malformed', `stream ${id} is not open on this connection`, { stream: id, seq });
  }

  /** The open stream of that number, if any. */
  get(id: number): StreamSession | undefined {
    const st = this.streams.get(id);
    return st && !st.ended ? st : undefined;
  }

  /** Ends a stream for an error: what still arrives for it is dropped. Returns false if it had ended already. */
  endForError(st: StreamSession): boolean {
    if (st.ended) return false;
    st.ended = true;
    st.backlog = [];
    this.streams.delete(st.id);
    this.ended.add(st.id);
    this.registry.release(st);
    return true;
  }

  /** Closes a stream the client closed. */
  close(st: StreamSession): void {
    st.ended = true;
    this.streams.delete(st.id);
    this.registry.release(st);
  }

  /** The connection is gone: every stream ends. */
  endAll(): void {
    for (const st of this.streams.values()) {
      st.ended = true;
      this.registry.release(st);
    }
  }

  /** Every stream the table holds (ended ones the connection closed under them too). */
  all(): IterableIterator<StreamSession> {
    return this.streams.values();
  }
}
