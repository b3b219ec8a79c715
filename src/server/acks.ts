// Acknowledgements: cumulative per stream, sent once items are durable (the
// engine's group commit), batched into one ack per stream per turn of the
// event loop, and at least every ACK_INTERVAL_MS while anything is
// unacknowledged. The latency metric is taken when the ack is sent: from the
// arrival of the message that held the items.
import { ACK_INTERVAL_MS } from '../protocol/constants';
import type { AckMessage } from '../protocol/messages';
import type { StreamSession } from './stream-table';

/** Items made durable whose acknowledgement is not sent yet. */
interface DurableUnacked {
  pairId: string;
  bytes: number;
  /** performance.now() when the message holding them arrived. */
  arrived: number;
}

export interface AckOptions {
  send(msg: AckMessage): void;
  /** The connection's open streams, and whether it may send. */
  streams(): Iterable<StreamSession>;
  ready(): boolean;
  /** Items of a pair are acknowledged: their write payload bytes, and the seconds from their message's arrival. */
  onAcked?: (pairId: string, bytes: number, seconds: number) => void;
}

export class AckSender {
  private scheduled = false;
  private timer: NodeJS.Timeout | null = null;
  private unacked: DurableUnacked[] = [];

  constructor(private readonly o: AckOptions) {}

  start(): void {
    this.timer = setInterval(() => this.flush(), ACK_INTERVAL_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Items of `st` up to `durableSeq` are durable. */
  durable(st: StreamSession, durableSeq: number, bytes: number, arrived: number): void {
    if (durableSeq > st.durableSeq) st.durableSeq = durableSeq;
    this.unacked.push({ pairId: st.pairId, bytes, arrived });
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  flush(): void {
    if (this.o.ready()) {
      for (const st of this.o.streams()) {
        if (st.ended || st.durableSeq <= st.ackedSeq) continue;
        st.ackedSeq = st.durableSeq;
        this.o.send({ type: 'ack', stream: st.id, durableSeq: st.durableSeq });
      }
    }
    // From arrival to the ack handed to the socket: what the agent held the items for.
    const now = performance.now();
    for (const d of this.unacked) this.o.onAcked?.(d.pairId, d.bytes, (now - d.arrived) / 1000);
    this.unacked = [];
  }
}
