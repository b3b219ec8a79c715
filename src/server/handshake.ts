// The handshake (docs/protocol.md): the agent's challenge, the client's
// hello with its proof (HMAC-SHA256 keyed with the passphrase over nonce ":"
// processServerId, compared in constant time), and the limits a peer meets
// before it has proven itself: a hello in time (HELLO_TIMEOUT_MS), at most
// MAX_HANDSHAKE_BYTES sent, and a pause before a bad proof is answered.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { Logger } from '../log';
import { CloseCode, MAX_HANDSHAKE_BYTES, PROTOCOL_VERSION } from '../protocol/constants';
import { ProtocolError } from '../protocol/errors';
import { parseClientMessage, type AgentMessage, type ClientMessage } from '../protocol/messages';

export function newNonce(): string {
  return randomBytes(32).toString('hex');
}

export function computeProof(passphrase: Buffer, nonce: string, processServerId: string): string {
  return createHmac('sha256', passphrase).update(`${nonce}:${processServerId}`).digest('hex');
}

export function proofMatches(passphrase: Buffer, nonce: string, processServerId: string, proof: string): boolean {
  if (!/^[0-9a-fA-F]{64}$/.test(proof)) return false;
  const expected = Buffer.from(computeProof(passphrase, nonce, processServerId), 'hex');
  return timingSafeEqual(expected, Buffer.from(proof, 'hex'));
}

export interface HandshakeOptions {
  agentId: string;
  passphrase: Buffer;
  helloTimeoutMs: number;
  /** Wait before answering a bad proof, to slow down guessing. */
  authFailDelayMs: number;
  log: Logger;
  remote: string;
}

/** What the handshake does to its connection. */
export interface HandshakePeer {
  send(msg: AgentMessage): void;
  /** Sends the error and closes the connection with its close code. */
  refuse(err: ProtocolError): void;
  closeWith(code: number, reason: string): void;
  /** Reads nothing more from the peer, and cuts it off a second after the close. */
  cutOff(): void;
}

export class Handshake {
  private readonly nonce = newNonce();
  private timer: NodeJS.Timeout | null = null;
  private done = false;

  constructor(
    private readonly o: HandshakeOptions,
    private readonly peer: HandshakePeer,
    /** The TLS socket, read directly only to count what arrives before the hello is accepted. */
    private readonly socket: Duplex,
  ) {}

  /** Sends the challenge and starts the hello's clock and the byte count. */
  start(): void {
    this.peer.send({ type: 'challenge', protocol: PROTOCOL_VERSION, agentId: this.o.agentId, nonce: this.nonce });
    this.timer = setTimeout(() => this.peer.closeWith(CloseCode.helloTimeout, `no hello within ${this.o.helloTimeoutMs / 1000} s`), this.o.helloTimeoutMs);
    this.limitBytes();
  }

  /**
   * Before its hello is accepted a peer may send MAX_HANDSHAKE_BYTES, counted
   * off the socket as bytes arrive, compressed or not: ws would otherwise
   * assemble a whole message of up to 64 MiB before the agent sees it, for
   * each of the connections allowed in their handshake. Past the limit the
   * peer is refused as for any message but a hello, and nothing more is read.
   */
  private limitBytes(): void {
    let received = 0;
    const count = (chunk: Buffer): void => {
      if (this.done) {
        this.socket.off('data', count);
        return;
      }
      received += chunk.length;
      if (received <= MAX_HANDSHAKE_BYTES) return;
      this.socket.off('data', count);
      this.o.log.warn({ remote: this.o.remote, bytes: received }, 'handshake refused: too much sent before the hello was accepted');
      this.finish();
      this.peer.refuse(new ProtocolError('auth-failed', `more than ${MAX_HANDSHAKE_BYTES} bytes sent before the handshake ended`));
      this.peer.cutOff();
    };
    this.socket.on('data', count);
  }

  /** The first message: the process server's id once its hello is accepted, or null once it is refused. */
  async onMessage(data: Buffer, isBinary: boolean): Promise<string | null> {
    let msg: ClientMessage | null = null;
    if (!isBinary) {
      try {
        msg = parseClientMessage(data.toString('utf8'));
      } catch {
        msg = null;
      }
    }
    if (msg === null || msg.type !== 'hello') return this.refuse(new ProtocolError('auth-failed', 'the first message must be a hello'));
    if (msg.protocol !== PROTOCOL_VERSION) {
      return this.refuse(new ProtocolError('protocol-version', `protocol ${msg.protocol} is not supported; this agent speaks protocol ${PROTOCOL_VERSION}`));
    }
    if (!proofMatches(this.o.passphrase, this.nonce, msg.processServerId, msg.proof)) {
      this.o.log.warn({ remote: this.o.remote, processServerId: msg.processServerId }, 'handshake refused: bad proof');
      // The hello's clock stops; what the peer sends meanwhile still counts against the byte limit.
      if (this.timer) clearTimeout(this.timer);
      await new Promise((r) => setTimeout(r, this.o.authFailDelayMs));
      return this.refuse(new ProtocolError('auth-failed', 'the proof does not match: check the passphrase'));
    }
    this.finish();
    return msg.processServerId;
  }

  /** The connection closed or the handshake ended: the clock stops. */
  finish(): void {
    this.done = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private refuse(err: ProtocolError): null {
    this.finish();
    this.peer.refuse(err);
    return null;
  }
}

