// Acknowledgements wait for the ingest log's writes and flushes, and the
// applier's reads and writes share the disk with them. Files opened with
// `maxIoBytes` (background I/O: targets, undo logs, the ingest log read back)
// already reach the disk in pieces; opened with an IoPriority too, they also
// wait between pieces, while acknowledgements come first (its owner says
// when), until no foreground write or flush is in flight. So an
// acknowledgement waits behind at most the pieces already at the disk.
import { InFlight } from './in-flight';

/** One engine's disk scheduler, in the small: foreground I/O, and when background I/O gives way to it. */
export class IoPriority {
  private readonly inFlight = new InFlight();

  /** @param giveWayWhen whether background I/O gives way now; false lets it run at full speed (the applier catching up). */
  constructor(private readonly giveWayWhen: () => boolean = () => false) {}

  /** Runs `io` (a write or flush acknowledgements wait for) as foreground I/O. */
  foreground<T>(io: () => Promise<T>): Promise<T> {
    return this.inFlight.run(io);
  }

  /** Whether background I/O is to go piece by piece, giving way, now. */
  get givingWay(): boolean {
    return this.giveWayWhen();
  }

  /** Resolves once no foreground I/O is in flight, or at once when giving way is not asked for. */
  async giveWay(): Promise<void> {
    while (this.inFlight.size > 0 && this.giveWayWhen()) await this.inFlight.idle();
  }
}

/** `buffers`, written back to back, cut into runs of at most `max` bytes each. */
export function piecesOf(buffers: readonly Buffer[], max: number): Buffer[][] {
  const pieces: Buffer[][] = [];
  let piece: Buffer[] = [];
  let room = max;
  for (const b of buffers) {
    let at = 0;
    while (at < b.length) {
      const take = Math.min(room, b.length - at);
      piece.push(b.subarray(at, at + take));
      at += take;
      room -= take;
      if (room === 0) {
        pieces.push(piece);
        piece = [];
        room = max;
      }
    }
  }
  if (piece.length > 0) pieces.push(piece);
  return pieces;
}
