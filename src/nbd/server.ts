// The daemon's NBD endpoint for test failovers: one listener per address (a
// Unix socket, or TCP with TLS), each serving the exports it is given; the
// connections of an export can be ended alone.
import { chmodSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { NbdConnection, type NbdTls } from './connection';
import type { NbdExport } from './export';

export type NbdAddress = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

export interface NbdServerOptions {
  address: NbdAddress;
  /** Required on TCP (FORCEDTLS); none on a Unix socket. */
  tls: NbdTls | null;
  maxInflightBytes?: number;
  onError(err: unknown, what: string): void;
}

export const NBD_MAX_INFLIGHT_BYTES = 32 * 1024 * 1024;

export class NbdServer {
  private readonly exports = new Map<string, NbdExport>();
  private readonly connections = new Set<NbdConnection>();
  private server: Server | null = null;

  constructor(private readonly o: NbdServerOptions) {}

  add(exp: NbdExport): void {
    this.exports.set(exp.name, exp);
  }

  /** Stops serving an export: its clients' connections end. */
  remove(name: string): void {
    this.exports.delete(name);
    for (const c of this.connections) if (c.exportName === name) c.close();
  }

  get exportCount(): number {
    return this.exports.size;
  }

  /** Clients connected to an export now. */
  clients(name: string): number {
    let n = 0;
    for (const c of this.connections) if (c.exportName === name && !c.isClosed) n++;
    return n;
  }

  async listen(): Promise<void> {
    const server = createServer((socket) => this.accept(socket));
    const a = this.o.address;
    if (a.kind === 'unix') rmSync(a.path, { force: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      if (a.kind === 'unix') server.listen(a.path, () => resolve());
      else server.listen(a.port, a.host, () => resolve());
    });
    server.on('error', (err) => this.o.onError(err, 'NBD listener failed'));
    if (a.kind === 'unix') chmodSync(a.path, 0o600);
    this.server = server;
  }

  /** The TCP port listened on (an ephemeral one when 0 was asked). */
  get port(): number | null {
    const addr = this.server?.address();
    return addr !== null && typeof addr === 'object' ? addr.port : null;
  }

  private accept(socket: Socket): void {
    socket.setNoDelay(true);
    const c = new NbdConnection(socket, {
      find: (name) => this.exports.get(name) ?? null,
      names: () => [...this.exports.keys()],
      tls: this.o.tls,
      maxInflightBytes: this.o.maxInflightBytes ?? NBD_MAX_INFLIGHT_BYTES,
      onError: this.o.onError,
    });
    this.connections.add(c);
    void c.run().finally(() => this.connections.delete(c));
  }

  /** Ends every connection and the listener (a Unix socket's file is removed). */
  async close(): Promise<void> {
    for (const c of this.connections) c.close();
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    if (this.o.address.kind === 'unix') rmSync(this.o.address.path, { force: true });
  }
}
