// The process-server side of the replication protocol (docs/protocol.md): connect, prove, open pairs, send, and
// hear acks and errors. Used by the simulator, the tests and the benchmarks.
import { EventEmitter } from 'node:events';
import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import WebSocket from 'ws';
import { MtagentError } from '../errors';
import { PROTOCOL_VERSION, REPLICATE_PATH } from '../protocol/constants';
import type { AgentMessage, ChecksumsResponse, ErrorMessage, OpenedMessage } from '../protocol/messages';
import { encodeRecords, type WriteRecordInput } from '../protocol/records';
import { computeProof } from '../server/handshake';

export interface ClientOptions {
  url: string;
  passphrase: Buffer;
  processServerId: string;
  /** Trust: the agent's certificate (PEM), its pinned SHA-256 fingerprint, or neither (tests only). */
  ca?: Buffer;
  fingerprint?: string;
  /** Client certificate for mutual TLS. */
  cert?: Buffer;
  key?: Buffer;
  /** Offer permessage-deflate (WAN/VPN failback). */
  compress?: boolean;
  protocol?: number;
  /** Proof override, to test a wrong passphrase. */
  proof?: string;
}

export class AgentRefusal extends MtagentError {
  readonly stream: number | null;
  readonly seq: number | null;
  constructor(msg: ErrorMessage) {
    super(msg.code, msg.message);
    this.name = 'AgentRefusal';
    this.stream = msg.stream ?? null;
    this.seq = msg.seq ?? null;
  }
}

export interface ClientEvents {
  ack: [stream: number, durableSeq: number];
  refusal: [err: ErrorMessage];
  close: [code: number, reason: string];
  message: [msg: AgentMessage];
}

/**
 * One connection to an agent. `connect()` resolves after `welcome`. Every
 * message from the agent is emitted; acks also as 'ack', errors as 'refusal'.
 */
export class ReplicationClient extends EventEmitter<ClientEvents> {
  readonly options: ClientOptions;
  ws: WebSocket | null = null;
  windowBytes = 0;
  closed = false;
  closeCode: number | null = null;
  private waiters: Array<{ match: (m: AgentMessage) => boolean; resolve: (m: AgentMessage) => void; reject: (e: Error) => void }> = [];

  constructor(options: ClientOptions) {
    super();
    this.options = options;
  }

  async connect(timeoutMs = 15_000): Promise<void> {
    const o = this.options;
    const url = o.url.endsWith(REPLICATE_PATH) ? o.url : `${o.url.replace(/\/$/, '')}${REPLICATE_PATH}`;
    const pin = o.fingerprint?.replace(/:/g, '').toLowerCase();
    const ws = new WebSocket(url, {
      perMessageDeflate: o.compress ?? false,
      maxPayload: 256 * 1024 * 1024,
      ...(o.ca ? { ca: o.ca } : {}),
      ...(o.cert && o.key ? { cert: o.cert, key: o.key } : {}),
      rejectUnauthorized: o.ca !== undefined,
    });
    // Pinning: Node checks identity only for a chain it verified, so the pin is checked here,
    // on the upgrade, before the hello (and its proof) is sent.
    let pinError: Error | null = null;
    if (pin) {
      ws.on('upgrade', (res) => {
        const cert = (res.socket as TLSSocket).getPeerCertificate();
        const fp = cert?.raw ? new X509Certificate(cert.raw).fingerprint256.replace(/:/g, '').toLowerCase() : 'none';
        if (fp !== pin) {
          pinError = new MtagentError('fingerprint-mismatch', `the agent's certificate fingerprint ${fp} is not the pinned ${pin}`);
          ws.terminate();
        }
      });
    }
    this.ws = ws;
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      const msg = JSON.parse((data as Buffer).toString('utf8')) as AgentMessage;
      this.emit('message', msg);
      if (msg.type === 'ack') this.emit('ack', msg.stream, msg.durableSeq);
      if (msg.type === 'error') this.emit('refusal', msg);
      const i = this.waiters.findIndex((w) => w.match(msg));
      if (i >= 0) {
        const [w] = this.waiters.splice(i, 1);
        w?.resolve(msg);
      }
    });
    ws.on('close', (code, reason) => {
      this.closed = true;
      this.closeCode = code;
      const err = new MtagentError('connection-closed', `the agent closed the connection (${code} ${reason.toString()})`);
      for (const w of this.waiters.splice(0)) w.reject(err);
      this.emit('close', code, reason.toString());
    });
    // A socket error is followed by 'close'; keep it from being an unhandled 'error' event.
    ws.on('error', () => undefined);
    const challenge = await this.next((m) => m.type === 'challenge' || m.type === 'error', timeoutMs, () => ws.terminate()).catch((err: unknown) => {
      throw pinError ?? err;
    });
    if (challenge.type !== 'challenge') throw new AgentRefusal(challenge as ErrorMessage);
    const proof = o.proof ?? computeProof(o.passphrase, challenge.nonce, o.processServerId);
    this.sendJson({ type: 'hello', protocol: o.protocol ?? PROTOCOL_VERSION, processServerId: o.processServerId, proof });
    const answer = await this.next((m) => m.type === 'welcome' || m.type === 'error', timeoutMs);
    if (answer.type === 'error') throw new AgentRefusal(answer);
    if (answer.type !== 'welcome') throw new Error('unexpected answer to hello');
    this.windowBytes = answer.windowBytes;
  }

  /** Resolves with the next message that matches (or rejects if the connection closes first). */
  next(match: (m: AgentMessage) => boolean, timeoutMs = 30_000, onTimeout?: () => void): Promise<AgentMessage> {
    return new Promise((resolve, reject) => {
      if (this.closed) {
        reject(new MtagentError('connection-closed', `the connection is closed (${this.closeCode})`));
        return;
      }
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        onTimeout?.();
        reject(new MtagentError('timeout', `no answer from the agent within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = {
        match,
        resolve: (m: AgentMessage) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.waiters.push(waiter);
    });
  }

  /** Opens a pair; resolves with `opened`, or rejects with the agent's refusal. */
  async open(pair: string, diskBytes: number, sectorBytes = 512): Promise<OpenedMessage> {
    this.sendJson({ type: 'open', pair, diskBytes, sectorBytes });
    const m = await this.next((x) => (x.type === 'opened' && x.pair === pair) || (x.type === 'error' && x.stream === undefined));
    if (m.type === 'error') throw new AgentRefusal(m);
    return m as OpenedMessage;
  }

  async checksums(stream: number, id: number, offset: number, length: number, blockBytes: number, timeoutMs = 120_000): Promise<ChecksumsResponse> {
    this.sendJson({ type: 'checksums', stream, id, offset, length, blockBytes });
    // An error about another request names it ("checksums ID: …"); one that ends the stream names none.
    const mine = (x: ErrorMessage): boolean => x.stream === stream && (!/^checksums \d+:/.test(x.message) || x.message.startsWith(`checksums ${id}:`));
    const m = await this.next((x) => (x.type === 'checksums' && x.id === id && x.stream === stream) || (x.type === 'error' && mine(x)), timeoutMs);
    if (m.type === 'error') throw new AgentRefusal(m);
    return m as ChecksumsResponse;
  }

  async closeStream(stream: number): Promise<number> {
    this.sendJson({ type: 'close', stream });
    const m = await this.next((x) => (x.type === 'closed' && x.stream === stream) || (x.type === 'error' && x.stream === stream));
    if (m.type === 'error') throw new AgentRefusal(m);
    return (m as { durableSeq: number }).durableSeq;
  }

  sendRecords(records: readonly WriteRecordInput[]): void {
    this.sendBinary(encodeRecords(records));
  }

  sendBinary(buf: Buffer): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(buf, { binary: true });
  }

  sendJson(msg: object): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  sendText(text: string): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(text);
  }

  /** Bytes queued in the socket, not yet sent. */
  get bufferedAmount(): number {
    return this.ws?.bufferedAmount ?? 0;
  }

  async close(): Promise<void> {
    if (!this.ws || this.closed) return;
    const done = new Promise<void>((r) => this.ws?.once('close', () => r()));
    this.ws.close(1000);
    await Promise.race([done, new Promise((r) => setTimeout(r, 2000))]);
    if (!this.closed) this.ws.terminate();
  }

  terminate(): void {
    this.ws?.terminate();
  }
}
