// The replication endpoint: wss://HOST:PORT/v1/replicate (docs/protocol.md).
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { WebSocketServer } from 'ws';
import type { Engine } from '../engine/engine';
import type { Logger } from '../log';
import { CloseCode, HELLO_TIMEOUT_MS, MAX_MESSAGE_BYTES, REPLICATE_PATH } from '../protocol/constants';
import { ArrivalBudget } from './arrival-budget';
import { ReplicationConnection } from './connection';
import { StreamRegistry } from './stream-table';

/**
 * The endpoint's limits, every default in one place. Most stand against
 * peers that do not play by the protocol; none needs changing for a healthy
 * process server.
 */
export const LISTENER_DEFAULTS = {
  /** Connections that have not yet proven themselves; more are refused (1013). */
  maxUnauthenticated: 64,
  /** A hello must come within this long (ms), or the connection is closed (4408). */
  helloTimeoutMs: HELLO_TIMEOUT_MS,
  /** Wait (ms) before a bad proof is answered, to slow down guessing. */
  authFailDelayMs: 500,
  /**
   * Payload a connection may have handed to the journal and not yet seen
   * durable before it stops reading its socket. Two 8 MiB batches (one being
   * flushed, the next being encoded) and the one filling: enough to keep the
   * disk busy. More only held the client's whole window (64 MiB) in memory
   * while the journal pushed back; the socket holds it instead.
   */
  maxInflightBytes: 24 * 1024 * 1024,
  /**
   * What all connections together may hold before those holding anything stop
   * reading (ArrivalBudget): room for one connection's limit and more, while
   * eight process servers flooding at once cannot take 8 x 24 MiB. At full
   * load one connection holds well under its limit.
   */
  maxHeldBytes: 64 * 1024 * 1024,
} as const;

export interface ServerOptions extends Partial<{ -readonly [K in keyof typeof LISTENER_DEFAULTS]: number }> {
  host: string;
  port: number;
  cert: Buffer;
  key: Buffer;
  /** When set, clients must present a certificate signed by it (mutual TLS). */
  clientCa: Buffer | null;
  agentId: string;
  passphrase: Buffer;
  engine: Engine;
  log: Logger;
  onDurable?: (pairId: string, bytes: number, seconds: number) => void;
}

export interface ProcessServerInfo {
  id: string;
  address: string;
  connectedSince: string;
}

export class ReplicationServer {
  private readonly https: Server;
  private readonly wss: WebSocketServer;
  private readonly connections = new Set<ReplicationConnection>();
  private readonly registry = new StreamRegistry();
  private readonly o: ServerOptions;
  private readonly budget: ArrivalBudget;

  private constructor(o: ServerOptions, https: Server, wss: WebSocketServer) {
    this.o = o;
    this.budget = new ArrivalBudget(o.maxHeldBytes ?? LISTENER_DEFAULTS.maxHeldBytes);
    this.https = https;
    this.wss = wss;
  }

  static async start(o: ServerOptions): Promise<ReplicationServer> {
    const https = createServer({
      cert: o.cert,
      key: o.key,
      minVersion: 'TLSv1.2',
      ...(o.clientCa ? { ca: o.clientCa, requestCert: true, rejectUnauthorized: true } : {}),
    });
    https.on('request', (_req, res) => {
      res.writeHead(426, { 'content-type': 'text/plain' });
      res.end(`mtagent: connect with a WebSocket to ${REPLICATE_PATH}\n`);
    });
    https.on('tlsClientError', (err) => o.log.warn({ err: err.message }, 'TLS handshake refused'));
    // Listening first: the WebSocket server passes its HTTPS server's errors on
    // as its own, and one it has no listener for (EADDRINUSE) would end the process.
    await new Promise<void>((resolve, reject) => {
      https.once('error', reject);
      https.listen(o.port, o.host, () => {
        https.off('error', reject);
        resolve();
      });
    });
    const wss = new WebSocketServer({
      server: https,
      path: REPLICATE_PATH,
      maxPayload: MAX_MESSAGE_BYTES,
      // Accepted when the client offers it (WAN/VPN failback); a LAN client does not.
      perMessageDeflate: { threshold: 1024, concurrencyLimit: 2 },
    });
    wss.on('error', (err) => o.log.error({ err: err.message }, 'replication endpoint error'));
    const server = new ReplicationServer(o, https, wss);
    wss.on('connection', (ws, req) => server.onConnection(ws, req.socket as TLSSocket));
    return server;
  }

  address(): { host: string; port: number } {
    const a = this.https.address() as AddressInfo;
    return { host: a.address, port: a.port };
  }

  processServers(): ProcessServerInfo[] {
    return [...this.connections]
      .filter((c) => c.authenticated && c.processServerId !== null)
      .map((c) => ({ id: c.processServerId as string, address: c.remote, connectedSince: c.connectedSince.toISOString() }));
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** What all connections hold that is not yet durable, and how many of them are not reading for it. */
  get arrivals(): { heldBytes: number; stoppedConnections: number } {
    return { heldBytes: this.budget.heldBytes, stoppedConnections: this.budget.stoppedCount };
  }

  private onConnection(ws: import('ws').WebSocket, socket: TLSSocket): void {
    const remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    const pending = [...this.connections].filter((c) => !c.authenticated).length;
    if (pending >= (this.o.maxUnauthenticated ?? LISTENER_DEFAULTS.maxUnauthenticated)) {
      this.o.log.warn({ remote, pending }, 'too many connections still in their handshake; refusing');
      ws.close(CloseCode.tryAgainLater, 'too many unauthenticated connections');
      return;
    }
    const conn = new ReplicationConnection(ws, socket, remote, {
      engine: this.o.engine,
      agentId: this.o.agentId,
      passphrase: this.o.passphrase,
      log: this.o.log,
      registry: this.registry,
      helloTimeoutMs: this.o.helloTimeoutMs ?? LISTENER_DEFAULTS.helloTimeoutMs,
      authFailDelayMs: this.o.authFailDelayMs ?? LISTENER_DEFAULTS.authFailDelayMs,
      maxInflightBytes: this.o.maxInflightBytes ?? LISTENER_DEFAULTS.maxInflightBytes,
      budget: this.budget,
      onClosed: (c) => this.connections.delete(c),
      onDurable: this.o.onDurable,
    });
    this.connections.add(conn);
    conn.start();
  }

  /** Ends a pair's stream, wherever it is open (the pair left the configuration). */
  endPair(pairId: string, make: (stream: number) => import('../protocol/errors').ProtocolError): void {
    const st = this.registry.get(pairId);
    if (st) st.holder.endStream(st, make(st.id));
  }

  /** Stops accepting, lets what was handed over become durable, acks it, and closes every connection. */
  async close(): Promise<void> {
    const stopped = new Promise<void>((resolve) => this.https.close(() => resolve()));
    for (const c of this.connections) await c.drain();
    for (const c of this.connections) c.shutdown();
    this.wss.close();
    // Connections that do not close within 2 s are left to the process exit; the timer itself must not hold the exit back.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([stopped, new Promise((r) => (timer = setTimeout(r, 2000)))]);
    clearTimeout(timer);
  }
}
