// What arrived over the replication endpoint and is not yet durable is held in
// memory. Each connection stops reading its socket when it alone holds more
// than its own limit; this budget bounds all of them together, so memory stays
// bounded however many process servers connect. Once the connections together
// hold more than the budget, every connection that holds anything stops
// reading, and those stopped read again when the total is back to half. A
// connection that holds nothing still reads, one message at a time: a pair
// that stalls on one connection slows the others, it does not stop them.

/** A connection, as the budget sees it: it can be told to look again at whether it reads. */
export interface BudgetMember {
  recheckReading(): void;
}

export class ArrivalBudget {
  private readonly held = new Map<BudgetMember, number>();
  private readonly stopped = new Set<BudgetMember>();
  private total = 0;

  constructor(readonly limitBytes: number) {}

  /** Bytes all members hold now. */
  get heldBytes(): number {
    return this.total;
  }

  /** Members not reading their sockets now, for the budget or their own limit. */
  get stoppedCount(): number {
    return this.stopped.size;
  }

  /** Whether a member that holds anything must stop reading. */
  get exceeded(): boolean {
    return this.total > this.limitBytes;
  }

  /** Whether a member stopped by the budget may read again. */
  get roomy(): boolean {
    return this.total <= this.limitBytes / 2;
  }

  /**
   * Records what `member` holds now. When that brings the total down to half
   * the budget, the members stopped meanwhile look again.
   */
  update(member: BudgetMember, bytes: number): void {
    const wasRoomy = this.roomy;
    this.total += bytes - (this.held.get(member) ?? 0);
    if (bytes === 0) this.held.delete(member);
    else this.held.set(member, bytes);
    if (!wasRoomy && this.roomy) for (const m of [...this.stopped]) m.recheckReading();
  }

  /** `member` stopped reading (true) or reads again (false). */
  setStopped(member: BudgetMember, stopped: boolean): void {
    if (stopped) this.stopped.add(member);
    else this.stopped.delete(member);
  }
}
