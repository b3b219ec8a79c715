// The heartbeat to the configuration server (docs/protocol.md, Heartbeat): a signed JSON POST
// every heartbeatSeconds. Failures are retried with backoff and jitter,
// logged, counted and shown in status; they never touch replication.
import { X509Certificate, createHmac } from 'node:crypto';
import { request } from 'node:https';
import type { TLSSocket } from 'node:tls';
import type { HeartbeatState } from '../control/operations';
import type { Logger } from '../log';

export interface HeartbeatOptions {
  url: string;
  agentId: string;
  passphrase: Buffer;
  intervalSeconds: number;
  /** Trust: a CA file's PEM, or the server certificate's pinned SHA-256 (64 hex). */
  ca: Buffer | null;
  fingerprint: string | null;
  timeoutMs?: number;
  body: () => Promise<unknown>;
  log: Logger;
  onFailure?: () => void;
}

export function signature(passphrase: Buffer, raw: Buffer): string {
  return `sha256=${createHmac('sha256', passphrase).update(raw).digest('hex')}`;
}

/** Sends one heartbeat; resolves with the HTTP status, rejects on network, TLS or pin failures. */
export function sendHeartbeat(o: HeartbeatOptions, raw: Buffer): Promise<number> {
  const url = new URL(`${o.url.replace(/\/$/, '')}/api/v1/agents/${encodeURIComponent(o.agentId)}/heartbeat`);
  return new Promise((resolve, reject) => {
    const req = request(url, {
      method: 'POST',
      agent: false,
      headers: { 'Content-Type': 'application/json', 'Content-Length': raw.length, 'X-MT-Signature': signature(o.passphrase, raw) },
      ...(o.ca ? { ca: o.ca } : {}),
      // With a pinned fingerprint the chain is not checked; the pin is, before the body is sent.
      rejectUnauthorized: o.fingerprint === null,
      timeout: o.timeoutMs ?? 10_000,
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${o.timeoutMs ?? 10_000} ms`)));
    req.on('error', reject);
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    if (o.fingerprint === null) {
      req.end(raw);
      return;
    }
    req.on('socket', (socket) => {
      const check = (): void => {
        const cert = (socket as TLSSocket).getPeerCertificate();
        const fp = cert?.raw ? new X509Certificate(cert.raw).fingerprint256.replace(/:/g, '').toLowerCase() : 'none';
        if (fp !== o.fingerprint) req.destroy(new Error(`configuration server certificate fingerprint ${fp} is not the pinned ${o.fingerprint}`));
        else req.end(raw);
      };
      if ((socket as TLSSocket).encrypted && (socket as TLSSocket).getPeerCertificate()?.raw) check();
      else socket.once('secureConnect', check);
    });
  });
}

export class Heartbeat {
  readonly state: HeartbeatState = { lastSuccess: null, lastFailure: null, lastError: null, consecutiveFailures: 0, failures: 0 };
  private readonly o: HeartbeatOptions;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(o: HeartbeatOptions) {
    this.o = o;
  }

  start(): void {
    this.schedule(0);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  /** After a failure: 1 s, 2 s, 4 s … up to the interval, each ±20 % so agents do not beat in step. */
  nextDelayMs(): number {
    const interval = this.o.intervalSeconds * 1000;
    const base = this.state.consecutiveFailures === 0 ? interval : Math.min(interval, 1000 * 2 ** (this.state.consecutiveFailures - 1));
    return Math.round(base * (0.8 + Math.random() * 0.4));
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.beat(), ms);
    this.timer.unref();
  }

  async beat(): Promise<void> {
    try {
      const raw = Buffer.from(JSON.stringify(await this.o.body()));
      const status = await sendHeartbeat(this.o, raw);
      if (status < 200 || status >= 300) throw new Error(`configuration server answered HTTP ${status}`);
      this.state.lastSuccess = new Date().toISOString();
      if (this.state.consecutiveFailures > 0) this.o.log.info({ after: this.state.consecutiveFailures }, 'heartbeat delivered again');
      this.state.consecutiveFailures = 0;
      this.state.lastError = null;
    } catch (err) {
      this.state.failures++;
      this.state.consecutiveFailures++;
      this.state.lastFailure = new Date().toISOString();
      this.state.lastError = err instanceof Error ? err.message : String(err);
      this.o.onFailure?.();
      this.o.log.warn({ err: this.state.lastError, consecutiveFailures: this.state.consecutiveFailures }, 'heartbeat failed; retrying with backoff');
    }
    this.schedule(this.nextDelayMs());
  }
}

/** The heartbeat body (docs/protocol.md), from a status report. */
export function heartbeatBody(s: import('../control/operations').StatusReport): unknown {
  return {
    agentId: s.agentId,
    hostname: s.hostname,
    version: s.version,
    protocol: s.protocol,
    time: s.time,
    uptimeSeconds: s.uptimeSeconds,
    retention: s.retention,
    processServers: s.processServers,
    pairs: s.pairs.map((p) => ({
      pair: p.pair,
      group: p.group,
      state: p.state,
      durableSeq: p.durableSeq,
      appliedSeq: p.appliedSeq,
      oldestPoint: p.oldestPoint,
      latestPoint: p.latestPoint,
      latestAppPoint: p.latestAppPoint,
      rpoSeconds: p.rpoSeconds,
      rpoHealth: p.rpoHealth,
      journalBytes: p.journalBytes,
      ingestBytesPerSecond: p.ingestBytesPerSecond,
      lastError: p.lastError,
      churn: p.churn,
      historySeconds: p.historySeconds,
      testFailover: p.testFailover === null ? null : { seq: p.testFailover.seq, time: p.testFailover.time, since: p.testFailover.since, scratchBytes: p.testFailover.scratchBytes },
    })),
    window: s.window,
  };
}
