// When a connection reads its socket. What it holds in memory (messages
// waiting their turn, and items handed to the engine and not yet durable) is
// bounded twice: by its own limit, and by the budget all connections share
// (arrival-budget.ts). Past either, it stops reading, and the client's TCP
// window pushes back; it reads again below half of its limit, once the
// budget has room or it holds nothing.
import type { ArrivalBudget, BudgetMember } from './arrival-budget';

/** The socket as flow control sees it. */
export interface Readable {
  pause(): void;
  resume(): void;
}

export class FlowControl implements BudgetMember {
  /** Bytes handed to the engine and not yet durable (or refused). */
  private inflight = 0;
  /** Bytes of messages received and not yet handled. */
  private queued = 0;
  private stopped = false;
  /** Refused for what it sent before its hello: never read again. */
  private cut = false;

  constructor(
    private readonly socket: Readable,
    private readonly budget: ArrivalBudget,
    private readonly maxInflightBytes: number,
  ) {}

  /** A message arrived and waits its turn. */
  queue(bytes: number): void {
    this.queued += bytes;
    this.update();
  }

  /** A message has been handled. */
  dequeue(bytes: number): void {
    this.queued -= bytes;
    this.update();
  }

  /** Items handed to the engine. */
  handOver(bytes: number): void {
    this.inflight += bytes;
    this.update();
  }

  /** Items durable, or refused. */
  settle(bytes: number): void {
    this.inflight -= bytes;
    this.update();
  }

  get held(): number {
    return this.inflight + this.queued;
  }

  get reading(): boolean {
    return !this.stopped;
  }

  /** Nothing more is read from this peer. */
  cutOff(): void {
    this.cut = true;
    this.socket.pause();
  }

  /** The connection is gone: what its appends still hold stays counted until they settle. */
  closed(): void {
    this.budget.setStopped(this, false);
  }

  recheckReading(): void {
    this.update();
  }

  private update(): void {
    const held = this.held;
    this.budget.update(this, held);
    if (!this.stopped && (held > this.maxInflightBytes || (held > 0 && this.budget.exceeded))) {
      this.stopped = true;
      this.socket.pause();
      this.budget.setStopped(this, true);
    } else if (this.stopped && !this.cut && held <= this.maxInflightBytes / 2 && (held === 0 || this.budget.roomy)) {
      this.stopped = false;
      this.socket.resume();
      this.budget.setStopped(this, false);
    }
  }
}
