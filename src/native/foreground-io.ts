// Acknowledgements wait for the ingest log's writes and flushes, and the
// applier's reads and writes share the disk with them. Files opened with
// `maxIoBytes` (background I/O: targets, undo logs, the ingest log read back)
// already reach the disk in pieces; while acknowledgements come first (the
// engine says when), they also wait between pieces until no foreground write
// or flush is in flight, so an acknowledgement waits behind at most the
// pieces already at the disk.
import { InFlight } from './in-flight';

export class ForegroundIo {
  private readonly inFlight = new InFlight();
  /** Whether background I/O gives way now. The engine sets it; false lets the applier run at full speed to catch up. */
  giveWayWhen: () => boolean = () => false;

  /** Runs `io` (a write or flush acknowledgements wait for) as foreground I/O. */
  run<T>(io: () => Promise<T>): Promise<T> {
    return this.inFlight.run(io);
  }

  /** Resolves once no foreground I/O is in flight, or at once when giving way is not asked for. */
  async giveWay(): Promise<void> {
    while (this.inFlight.size > 0 && this.giveWayWhen()) await this.inFlight.idle();
  }
}

/** The process's one disk scheduler, in the small: the engine sets when background I/O gives way. */
export const foregroundIo = new ForegroundIo();

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
