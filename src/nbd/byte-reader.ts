// Exactly n bytes at a time from a stream, as a protocol reads them. The
// stream is paused whenever nobody waits for bytes, so what a client sends
// ahead stays in the kernel's socket buffer (back-pressure), not in ours.
import type { Duplex } from 'node:stream';

export class StreamEnded extends Error {
  constructor() {
    super('the connection closed');
    this.name = 'StreamEnded';
  }
}

export class ByteReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private waiting: { bytes: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | null = null;
  private ended = false;
  private readonly onData = (chunk: Buffer): void => {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    this.serve();
  };
  private readonly onEnd = (): void => {
    this.ended = true;
    this.serve();
  };

  constructor(private readonly stream: Duplex) {
    stream.on('data', this.onData);
    stream.on('end', this.onEnd);
    stream.on('close', this.onEnd);
    stream.pause();
  }

  /** The next `bytes` bytes; rejects with StreamEnded if the stream ends first. */
  read(bytes: number): Promise<Buffer> {
    if (this.waiting) return Promise.reject(new Error('ByteReader.read is not re-entrant'));
    return new Promise((resolve, reject) => {
      this.waiting = { bytes, resolve, reject };
      this.serve();
    });
  }

  /** Stops reading the stream; returns what was read from it and not yet taken (STARTTLS hands it over). */
  detach(): Buffer {
    this.stream.off('data', this.onData);
    this.stream.off('end', this.onEnd);
    this.stream.off('close', this.onEnd);
    this.stream.pause();
    const rest = Buffer.concat(this.chunks);
    this.chunks = [];
    this.buffered = 0;
    return rest;
  }

  private serve(): void {
    const w = this.waiting;
    if (w === null) {
      this.stream.pause();
      return;
    }
    if (this.buffered >= w.bytes) {
      this.waiting = null;
      w.resolve(this.take(w.bytes));
      if (this.waiting === null) this.stream.pause();
      return;
    }
    if (this.ended) {
      this.waiting = null;
      w.reject(new StreamEnded());
      return;
    }
    this.stream.resume();
  }

  private take(bytes: number): Buffer {
    if (bytes === 0) return Buffer.alloc(0);
    const first = this.chunks[0] as Buffer;
    if (first.length >= bytes) {
      const out = first.subarray(0, bytes);
      if (first.length === bytes) this.chunks.shift();
      else this.chunks[0] = first.subarray(bytes);
      this.buffered -= bytes;
      return out;
    }
    const out = Buffer.allocUnsafe(bytes);
    let at = 0;
    while (at < bytes) {
      const c = this.chunks[0] as Buffer;
      const n = Math.min(c.length, bytes - at);
      c.copy(out, at, 0, n);
      at += n;
      if (n === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(n);
    }
    this.buffered -= bytes;
    return out;
  }
}
