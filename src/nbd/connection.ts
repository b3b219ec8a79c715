// One NBD client: the fixed newstyle handshake (options until GO or
// EXPORT_NAME; on TCP nothing but STARTTLS before TLS), then requests, each
// checked before any I/O and answered with a simple reply. Requests run
// concurrently up to a bound of bytes in flight (reads being read, writes
// being written, replies the client has not taken yet); past it the socket
// is not read, so a client that sends more, or never reads its replies,
// holds the server's memory to that bound.
import type { Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import type { Duplex } from 'node:stream';
import { ByteReader, StreamEnded } from './byte-reader';
import { NbdError, type NbdExport } from './export';
import {
  Cmd,
  CmdFlag,
  Errno,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  IHAVEOPT,
  Info,
  MAX_OPTION_BYTES,
  MAX_REQUEST_BYTES,
  NBD_MAGIC,
  OPTION_HEADER_BYTES,
  Opt,
  REQUEST_BYTES,
  Rep,
  TFlag,
  decodeRequest,
  infoBlockSize,
  infoExport,
  infoName,
  optionError,
  optionReply,
  simpleReply,
  type Request,
} from './protocol';

export interface NbdTls {
  context: SecureContext;
  /** A client certificate signed by the configured CA is required. */
  requireClientCert: boolean;
}

export interface NbdConnectionOptions {
  /** The export of a name; null when there is none. */
  find(name: string): NbdExport | null;
  names(): string[];
  /** TCP: TLS before anything else (FORCEDTLS). Null on a Unix socket. */
  tls: NbdTls | null;
  /** Bytes of requests and replies in flight at once, per client. */
  maxInflightBytes: number;
  onError(err: unknown, what: string): void;
}

/** The client broke the protocol: the connection ends (the export and other clients are untouched). */
class ProtocolViolation extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolViolation';
  }
}

const PREFERRED_BLOCK = 4096;
/** Requests in flight per client, whatever their size (a flood of flushes or trims costs memory too). */
const MAX_INFLIGHT_REQUESTS = 256;

export class NbdConnection {
  private stream: Duplex;
  private reader: ByteReader;
  private tlsUp = false;
  private closed = false;
  private inflightBytes = 0;
  private readonly inflight = new Set<Promise<void>>();
  private roomWaiters: Array<() => void> = [];
  /** Writes not yet flushed by a FLUSH, for the FLUSH that follows to wait on. */
  private readonly writes = new Set<Promise<void>>();
  exportName: string | null = null;

  constructor(
    socket: Socket,
    private readonly o: NbdConnectionOptions,
  ) {
    this.stream = socket;
    this.reader = new ByteReader(socket);
    socket.on('error', () => this.close());
  }

  /** Runs the connection to its end. Never rejects: a broken client only ends its own connection. */
  async run(): Promise<void> {
    try {
      const exp = await this.handshake();
      if (exp === null) return;
      this.exportName = exp.name;
      await this.transmission(exp);
    } catch (err) {
      if (!(err instanceof StreamEnded) && !(err instanceof ProtocolViolation) && !this.closed) this.o.onError(err, 'NBD connection failed');
    } finally {
      this.close();
    }
  }

  /** Ends the connection now (the test stops, or the daemon). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stream.destroy();
    for (const w of this.roomWaiters.splice(0)) w();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  // ---- handshake ----------------------------------------------------------

  private send(b: Buffer): boolean {
    if (this.closed) return true;
    return this.stream.write(b);
  }

  private async handshake(): Promise<NbdExport | null> {
    const greeting = Buffer.alloc(18);
    greeting.writeBigUInt64BE(NBD_MAGIC, 0);
    greeting.writeBigUInt64BE(IHAVEOPT, 8);
    greeting.writeUInt16BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 16);
    this.send(greeting);
    const clientFlags = (await this.reader.read(4)).readUInt32BE(0);
    if ((clientFlags & FLAG_FIXED_NEWSTYLE) === 0) throw new ProtocolViolation('the client does not speak the fixed newstyle handshake');
    if ((clientFlags & ~(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES)) !== 0) throw new ProtocolViolation('unknown client flags');
    const noZeroes = (clientFlags & FLAG_NO_ZEROES) !== 0;
    for (;;) {
      const head = await this.reader.read(OPTION_HEADER_BYTES);
      if (head.readBigUInt64BE(0) !== IHAVEOPT) throw new ProtocolViolation('bad option magic');
      const option = head.readUInt32BE(8);
      const length = head.readUInt32BE(12);
      if (length > MAX_OPTION_BYTES) throw new ProtocolViolation(`option data of ${length} bytes`);
      const data = await this.reader.read(length);
      if (this.o.tls !== null && !this.tlsUp) {
        if (option === Opt.STARTTLS) {
          if (length !== 0) {
            this.send(optionError(option, Rep.ERR_INVALID, 'STARTTLS takes no data'));
            continue;
          }
          this.send(optionReply(option, Rep.ACK));
          await this.startTls(this.o.tls);
          continue;
        }
        if (option === Opt.ABORT) {
          this.send(optionReply(option, Rep.ACK));
          return null;
        }
        // EXPORT_NAME cannot be answered with an error: the session ends.
        if (option === Opt.EXPORT_NAME) throw new ProtocolViolation('EXPORT_NAME before TLS');
        this.send(optionError(option, Rep.ERR_TLS_REQD, 'TLS is required: send NBD_OPT_STARTTLS first'));
        continue;
      }
      switch (option) {
        case Opt.ABORT:
          this.send(optionReply(option, Rep.ACK));
          return null;
        case Opt.EXPORT_NAME: {
          const exp = this.o.find(data.toString('utf8'));
          if (exp === null) throw new ProtocolViolation('EXPORT_NAME of an unknown export');
          const reply = Buffer.alloc(noZeroes ? 10 : 134);
          reply.writeBigUInt64BE(BigInt(exp.sizeBytes), 0);
          reply.writeUInt16BE(transmissionFlags(exp), 8);
          this.send(reply);
          return exp;
        }
        case Opt.LIST: {
          if (length !== 0) {
            this.send(optionError(option, Rep.ERR_INVALID, 'LIST takes no data'));
            break;
          }
          for (const name of this.o.names()) {
            const n = Buffer.from(name, 'utf8');
            const d = Buffer.alloc(4 + n.length);
            d.writeUInt32BE(n.length, 0);
            n.copy(d, 4);
            this.send(optionReply(option, Rep.SERVER, d));
          }
          this.send(optionReply(option, Rep.ACK));
          break;
        }
        case Opt.STARTTLS:
          this.send(optionError(option, this.tlsUp ? Rep.ERR_INVALID : Rep.ERR_POLICY, this.tlsUp ? 'TLS is up already' : 'this socket is local: no TLS'));
          break;
        case Opt.INFO:
        case Opt.GO: {
          const exp = this.infoOrGo(option, data);
          if (exp !== null && option === Opt.GO) return exp;
          break;
        }
        default:
          this.send(optionError(option, Rep.ERR_UNSUP, `option ${option} is not supported`));
      }
    }
  }

  /** INFO and GO: the export's size, flags and block sizes; GO then enters transmission (the export is returned). */
  private infoOrGo(option: number, data: Buffer): NbdExport | null {
    if (data.length < 6) {
      this.send(optionError(option, Rep.ERR_INVALID, 'option data too short'));
      return null;
    }
    const nameLength = data.readUInt32BE(0);
    if (4 + nameLength + 2 > data.length) {
      this.send(optionError(option, Rep.ERR_INVALID, 'export name longer than the option'));
      return null;
    }
    const name = data.subarray(4, 4 + nameLength).toString('utf8');
    const count = data.readUInt16BE(4 + nameLength);
    if (4 + nameLength + 2 + 2 * count !== data.length) {
      this.send(optionError(option, Rep.ERR_INVALID, 'information requests do not match the option length'));
      return null;
    }
    const requested = new Set<number>();
    for (let i = 0; i < count; i++) requested.add(data.readUInt16BE(4 + nameLength + 2 + 2 * i));
    const exp = this.o.find(name);
    if (exp === null) {
      this.send(optionError(option, Rep.ERR_UNKNOWN, `no export named ${JSON.stringify(name)}: no test failover of that pair runs`));
      return null;
    }
    this.send(optionReply(option, Rep.INFO, infoExport(exp.sizeBytes, transmissionFlags(exp))));
    if (requested.has(Info.NAME)) this.send(optionReply(option, Rep.INFO, infoName(exp.name)));
    this.send(optionReply(option, Rep.INFO, infoBlockSize(exp.minBlockBytes, Math.max(exp.minBlockBytes, PREFERRED_BLOCK), MAX_REQUEST_BYTES)));
    this.send(optionReply(option, Rep.ACK));
    return exp;
  }

  private async startTls(tls: NbdTls): Promise<void> {
    const leftover = this.reader.detach();
    const secure = new TLSSocket(this.stream as Socket, {
      isServer: true,
      secureContext: tls.context,
      requestCert: tls.requireClientCert,
      rejectUnauthorized: tls.requireClientCert,
    });
    if (leftover.length > 0) secure.unshift(leftover);
    await new Promise<void>((resolve, reject) => {
      secure.once('secure', resolve);
      secure.once('error', reject);
      secure.once('close', () => reject(new StreamEnded()));
    });
    secure.on('error', () => this.close());
    this.stream = secure;
    this.reader = new ByteReader(secure);
    this.tlsUp = true;
  }

  // ---- transmission ---------------------------------------------------------

  private async transmission(exp: NbdExport): Promise<void> {
    for (;;) {
      const head = await this.reader.read(REQUEST_BYTES);
      const req = decodeRequest(head);
      if (req === null) throw new ProtocolViolation('bad request magic');
      if (req.type === Cmd.DISC) {
        await Promise.allSettled([...this.inflight]);
        this.stream.end();
        return;
      }
      const problem = check(req, exp);
      if (problem !== null) {
        // A write's payload follows its header: one we will not take ends the connection (it cannot be skipped for free).
        if (req.type === Cmd.WRITE) {
          if (req.length > MAX_REQUEST_BYTES) throw new ProtocolViolation('a write larger than the maximum block size');
          await this.reader.read(req.length);
        }
        this.send(simpleReply(req.handle, problem));
        continue;
      }
      // What the request holds in memory: its payload, or the data it reads.
      const cost = req.type === Cmd.READ || req.type === Cmd.WRITE ? req.length : 0;
      await this.room(cost);
      if (this.closed) return;
      const data = req.type === Cmd.WRITE ? await this.reader.read(req.length) : null;
      this.start(this.serve(exp, req, data), cost);
    }
  }

  /** Waits until `bytes` more fit the bound (one request alone always fits), and a request more. */
  private async room(bytes: number): Promise<void> {
    while (!this.closed && (this.inflight.size >= MAX_INFLIGHT_REQUESTS || (this.inflightBytes > 0 && this.inflightBytes + bytes > this.o.maxInflightBytes))) {
      await new Promise<void>((r) => this.roomWaiters.push(r));
    }
  }

  private start(work: Promise<number>, cost: number): void {
    this.inflightBytes += cost;
    const p: Promise<void> = work
      .then(
        (held) => this.whenSent(held),
        (err: unknown) => this.o.onError(err, 'NBD request failed'),
      )
      .finally(() => {
        this.inflightBytes -= cost;
        this.inflight.delete(p);
        for (const w of this.roomWaiters.splice(0)) w();
      });
    this.inflight.add(p);
  }

  /** Replies waiting for the socket to drain: one listener serves them all. */
  private drainWaiters: Array<() => void> = [];

  /** Resolves once the socket has taken a reply it buffered (a client not reading keeps the bytes counted). */
  private whenSent(buffered: number): Promise<void> {
    if (buffered === 0 || this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.drainWaiters.push(resolve);
      if (this.drainWaiters.length > 1) return;
      const stream = this.stream;
      const done = (): void => {
        stream.off('drain', done);
        stream.off('close', done);
        for (const w of this.drainWaiters.splice(0)) w();
      };
      stream.on('drain', done);
      stream.on('close', done);
    });
  }

  /** Runs one checked request and replies; resolves with the bytes the socket is still holding of the reply (0 when it took them). */
  private async serve(exp: NbdExport, req: Request, data: Buffer | null): Promise<number> {
    const fua = (req.flags & CmdFlag.FUA) !== 0;
    let payload: Buffer | null = null;
    let error = 0;
    try {
      switch (req.type) {
        case Cmd.READ:
          payload = await exp.read(req.offset, req.length);
          break;
        case Cmd.WRITE:
          await this.tracked(exp.write(req.offset, data as Buffer, fua));
          break;
        case Cmd.TRIM:
        case Cmd.WRITE_ZEROES:
          await this.tracked(exp.writeZeroes(req.offset, req.length, fua));
          break;
        case Cmd.FLUSH:
          await Promise.allSettled([...this.writes]);
          await exp.flush();
          break;
      }
    } catch (err) {
      error = err instanceof NbdError ? err.errno : Errno.EIO;
      if (!(err instanceof NbdError)) this.o.onError(err, `NBD ${commandName(req.type)} at ${req.offset}+${req.length} failed`);
      payload = null;
    }
    const head = simpleReply(req.handle, error);
    if (payload === null) return this.send(head) ? 0 : head.length;
    this.send(head);
    return this.send(payload) ? 0 : payload.length;
  }

  private tracked(p: Promise<void>): Promise<void> {
    const t = p.finally(() => this.writes.delete(t));
    this.writes.add(t);
    return t;
  }
}

function transmissionFlags(exp: NbdExport): number {
  let f = TFlag.HAS_FLAGS | TFlag.SEND_FLUSH | TFlag.SEND_FUA | TFlag.CAN_MULTI_CONN;
  if (exp.readOnly) f |= TFlag.READ_ONLY;
  else f |= TFlag.SEND_TRIM | TFlag.SEND_WRITE_ZEROES;
  return f;
}

/** The errno a request is refused with before any I/O, or null when it may be served. */
function check(req: Request, exp: NbdExport): number | null {
  const known = [Cmd.READ, Cmd.WRITE, Cmd.FLUSH, Cmd.TRIM, Cmd.WRITE_ZEROES] as number[];
  if (!known.includes(req.type)) return Errno.EINVAL;
  const allowed = req.type === Cmd.WRITE_ZEROES ? CmdFlag.FUA | CmdFlag.NO_HOLE : CmdFlag.FUA;
  if ((req.flags & ~allowed) !== 0) return Errno.EINVAL;
  if (req.type === Cmd.FLUSH) return req.offset === 0 && req.length === 0 ? null : Errno.EINVAL;
  if (req.length === 0) return Errno.EINVAL;
  if (req.type !== Cmd.TRIM && req.type !== Cmd.WRITE_ZEROES && req.length > MAX_REQUEST_BYTES) return Errno.EINVAL;
  if (req.offset + req.length > exp.sizeBytes) return Errno.EINVAL;
  if (req.offset % exp.minBlockBytes !== 0 || req.length % exp.minBlockBytes !== 0) return Errno.EINVAL;
  if (exp.readOnly && req.type !== Cmd.READ) return Errno.EPERM;
  return null;
}

function commandName(type: number): string {
  return Object.entries(Cmd).find(([, v]) => v === type)?.[0] ?? String(type);
}
