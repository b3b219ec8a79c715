// The heartbeat (docs/protocol.md) and the metrics endpoint, against the spawned daemon and
// a real HTTPS configuration server in this process.
import { X509Certificate, createHmac } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readPassphrase } from '../../src/config/load';
import { MAIN, RunningDaemon, cli, freePort, makeInstallation } from '../helpers/daemon';

const MiB = 1024 * 1024;
const roots: string[] = [];
afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

interface Received {
  path: string;
  headers: Record<string, string | string[] | undefined>;
  raw: Buffer;
}

async function configServer(cert: Buffer, key: Buffer, answer: () => number): Promise<{ server: Server; port: number; received: Received[] }> {
  const received: Received[] = [];
  const server = createServer({ cert, key }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ path: req.url ?? '', headers: req.headers, raw: Buffer.concat(chunks) });
      res.writeHead(answer());
      res.end();
    });
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return { server, port, received };
}

function statusJson(configPath: string): string {
  return execFileSync(process.execPath, [MAIN, 'status', '--config', configPath, '--json'], { encoding: 'utf8' });
}

async function until<T>(fn: () => T | undefined | false, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('heartbeat', () => {
  it('posts the heartbeat body, signed, every heartbeatSeconds; failures show in status and metrics and never stop replication', async () => {
    const root = mkdtempSync(join(tmpdir(), 'mtagent-hb-'));
    roots.push(root);
    const configPath = await makeInstallation(root, [{ id: 'h1', sizeBytes: MiB, group: 'g' }]);
    const cert = readFileSync(join(root, 'tls', 'agent.crt'));
    const key = readFileSync(join(root, 'tls', 'agent.key'));
    let status = 200;
    const cs = await configServer(cert, key, () => status);
    const metricsPort = await freePort();
    writeFileSync(
      configPath,
      readFileSync(configPath, 'utf8')
        .replace('configServer: null', `configServer: { url: "https://127.0.0.1:${cs.port}", heartbeatSeconds: 1, caFile: tls/agent.crt }`)
        .replace('metrics: null', `metrics: { listen: "127.0.0.1:${metricsPort}" }`),
    );
    const daemon = new RunningDaemon(configPath);
    await daemon.start();
    try {
      const c = await daemon.client();
      const o = await c.open('h1', MiB);
      c.sendRecords([{ stream: o.stream, seq: 1, offset: 0, time: Date.now() * 1000, data: Buffer.alloc(4096, 1) }]);
      await c.next((m) => m.type === 'ack' && m.durableSeq >= 1);

      const beat = await until(() => cs.received.find((r) => (JSON.parse(r.raw.toString()) as { pairs: Array<{ durableSeq: number }> }).pairs[0]?.durableSeq === 1));
      expect(beat.path).toBe('/api/v1/agents/mt-01/heartbeat');
      expect(beat.headers['content-type']).toBe('application/json');
      const passphrase = readPassphrase(daemon.config);
      expect(beat.headers['x-mt-signature']).toBe(`sha256=${createHmac('sha256', passphrase).update(beat.raw).digest('hex')}`);
      const body = JSON.parse(beat.raw.toString()) as Record<string, unknown>;
      expect(body).toMatchObject({
        agentId: 'mt-01',
        hostname: expect.any(String),
        version: expect.any(String),
        protocol: 1,
        time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
        uptimeSeconds: expect.any(Number),
        retention: { path: expect.any(String), capacityBytes: expect.any(Number), freeBytes: expect.any(Number), usedBytes: expect.any(Number), healthy: true, problems: [] },
        processServers: [{ id: 'ps-test', address: expect.stringContaining('127.0.0.1'), connectedSince: expect.any(String) }],
      });
      expect((body.pairs as unknown[])[0]).toEqual({
        pair: 'h1',
        group: 'g',
        state: expect.any(String),
        durableSeq: 1,
        appliedSeq: expect.any(Number),
        oldestPoint: null,
        latestPoint: expect.any(String),
        latestAppPoint: null,
        rpoSeconds: expect.any(Number),
        rpoHealth: 'ok',
        journalBytes: expect.any(Number),
        ingestBytesPerSecond: expect.any(Number),
        lastError: null,
        churn: { lastMinuteBytesPerSecond: expect.any(Number), lastHourBytesPerSecond: expect.any(Number), peakHourBytesPerSecond: expect.any(Number) },
        // Its oldest point is the disk before its first item, which has no time.
        historySeconds: null,
        testFailover: null,
      });
      expect(body.window).toEqual({ heldSeconds: null, policySeconds: 86400, neededBytes: expect.any(Number), capacityBytes: expect.any(Number), fits: expect.any(Boolean), shortenedForSpaceAt: null });
      const before = cs.received.length;
      await until(() => cs.received.length >= before + 2, 5000);

      // The configuration server fails: retried, visible, and replication goes on.
      status = 503;
      const failing = await until(() => {
        const out = statusJson(configPath);
        const s = JSON.parse(out) as { heartbeat: { consecutiveFailures: number; lastError: string } };
        return s.heartbeat.consecutiveFailures >= 2 ? s : undefined;
      });
      expect(failing.heartbeat.lastError).toContain('HTTP 503');
      c.sendRecords([{ stream: o.stream, seq: 2, offset: 4096, time: Date.now() * 1000, data: Buffer.alloc(4096, 2) }]);
      // A tag is an item but no write payload: the byte counter leaves it out.
      c.sendJson({ type: 'tag', stream: o.stream, seq: 3, time: Date.now() * 1000, kind: 'app', name: 'm1' });
      await c.next((m) => m.type === 'ack' && m.durableSeq >= 3);
      const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      expect(metrics).toMatch(/mtagent_heartbeat_failures_total [1-9]/);
      expect(metrics).toContain('mtagent_pair_durable_seq{pair="h1"} 3');
      expect(metrics).toContain('mtagent_ingested_bytes_total{pair="h1"} 8192\n');
      expect(metrics).toMatch(/mtagent_pair_apply_lag_bytes\{pair="h1"\} (0|4096)\n/);
      expect(metrics).toMatch(/mtagent_ack_latency_seconds_count [1-9]/);
      expect(metrics).toContain('mtagent_retention_capacity_bytes');
      expect(metrics).toMatch(/^mtagent_pair_churn_bytes_per_second\{pair="h1",over="minute"\} [1-9]/m);
      expect(metrics).toMatch(/^mtagent_retention_window_needed_bytes \d+/m);
      expect(metrics).toMatch(/^mtagent_retention_window_fits [01]$/m);
      // Every series the shipped dashboard plots is one the agent serves.
      const dashboard = readFileSync(join(__dirname, '..', '..', 'docs', 'grafana-dashboard.json'), 'utf8');
      for (const name of new Set(dashboard.match(/mtagent_[a-z_]+/g) ?? [])) expect(metrics, name).toContain(`# HELP ${name.replace(/_(bucket|count|sum)$/, '')} `);
      // Everything sent is acked: nothing held, every connection reading.
      expect(metrics).toContain('mtagent_arrival_held_bytes 0\n');
      expect(metrics).toContain('mtagent_connections_not_reading 0\n');
      // Where the applier's time goes: the two writes were applied, so it read their before-images and wrote the target.
      expect(metrics).toMatch(/^mtagent_apply_phase_seconds_total\{phase="write"\} 0\.\d*[1-9]/m);
      expect(metrics).toMatch(/^mtagent_apply_before_image_read_bytes_total (8192|4096)\n/m);
      expect(metrics).toMatch(/^mtagent_apply_busy_seconds_total 0\.\d*[1-9]/m);
      // The process figures carry the agent's prefix once.
      expect(metrics).toMatch(/^mtagent_process_resident_memory_bytes \d+/m);
      expect(metrics).not.toMatch(/mtagent_process_process_|mtagent_process_nodejs_/);
      const health = await fetch(`http://127.0.0.1:${metricsPort}/healthz`);
      expect(health.status).toBe(200);
      expect(await health.json()).toEqual({ status: 'ok', problems: [] });
      status = 204;
      await until(() => {
        const out = statusJson(configPath);
        return (JSON.parse(out) as { heartbeat: { consecutiveFailures: number } }).heartbeat.consecutiveFailures === 0;
      });
      // A test failover shows in the heartbeat's pair entry and in the metrics.
      const drill = await cli(['test-failover', 'start', 'h1', '--at', 'seq:2', '--config', configPath]);
      expect(drill.code, drill.stderr).toBe(0);
      const seen = cs.received.length;
      const withTest = await until(() =>
        cs.received.slice(seen).map((r) => (JSON.parse(r.raw.toString()) as { pairs: Array<{ testFailover: unknown }> }).pairs[0]?.testFailover).find((t) => t != null),
      );
      expect(withTest).toEqual({ seq: 2, time: expect.any(String), since: expect.any(String), scratchBytes: 0 });
      const scraped = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      expect(scraped).toContain('mtagent_test_failover_active{pair="h1"} 1\n');
      expect(scraped).toContain('mtagent_test_failover_scratch_bytes{pair="h1"} 0\n');
      expect((await cli(['test-failover', 'stop', 'h1', '--config', configPath])).code).toBe(0);
      await c.close();
    } finally {
      expect(await daemon.stop()).toBe(0);
      cs.server.close();
    }
  }, 60_000);

  it('checks the configuration server against a pinned fingerprint', async () => {
    const root = mkdtempSync(join(tmpdir(), 'mtagent-hbpin-'));
    roots.push(root);
    const configPath = await makeInstallation(root, [{ id: 'h2', sizeBytes: MiB }]);
    const cert = readFileSync(join(root, 'tls', 'agent.crt'));
    const cs = await configServer(cert, readFileSync(join(root, 'tls', 'agent.key')), () => 200);
    const fp = new X509Certificate(cert).fingerprint256; // with colons, upper case: both are accepted
    const base = readFileSync(configPath, 'utf8');
    writeFileSync(configPath, base.replace('configServer: null', `configServer: { url: "https://127.0.0.1:${cs.port}", heartbeatSeconds: 1, fingerprint: "${fp}" }`));
    let daemon = new RunningDaemon(configPath);
    await daemon.start();
    await until(() => cs.received.length >= 1);
    expect(await daemon.stop()).toBe(0);
    writeFileSync(configPath, base.replace('configServer: null', `configServer: { url: "https://127.0.0.1:${cs.port}", heartbeatSeconds: 1, fingerprint: "${'ab'.repeat(32)}" }`));
    const seen = cs.received.length;
    daemon = new RunningDaemon(configPath);
    await daemon.start();
    await new Promise((r) => setTimeout(r, 2500));
    const st = await cli(['status', '--config', configPath, '--json']);
    const report = JSON.parse(st.stdout) as { heartbeat: { consecutiveFailures: number; lastError: string } };
    expect(report.heartbeat.consecutiveFailures).toBeGreaterThan(0);
    expect(report.heartbeat.lastError).toContain('not the pinned');
    expect(cs.received.length).toBe(seen); // nothing was sent to the wrong server
    expect(await daemon.stop()).toBe(0);
    cs.server.close();
  }, 60_000);
});

describe('configuration errors', () => {
  it('stops with exit 2 and one line naming the key', async () => {
    const root = mkdtempSync(join(tmpdir(), 'mtagent-cfg-'));
    roots.push(root);
    const configPath = await makeInstallation(root, [{ id: 'c1', sizeBytes: MiB }]);
    const good = readFileSync(configPath, 'utf8');
    const cases: Array<[string, string, RegExp]> = [
      ['unknown key', `${good}colour: blue\n`, /colour: unknown key/],
      ['bad value', good.replace('retentionSeconds: 86400', 'retentionSeconds: -5'), /policy\.retentionSeconds: /],
      ['bad size', good.replace(`sizeBytes: ${MiB}`, 'sizeBytes: 1000'), /pairs\[0\]\.sizeBytes: must be a multiple of 512/],
      ['bad YAML', `${good}\n  : : :\n`, /not valid YAML/],
    ];
    for (const [name, text, expected] of cases) {
      writeFileSync(configPath, text);
      const r = await cli(['run', '--config', configPath]);
      expect(r.code, name).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr, name).toMatch(expected);
    }
    writeFileSync(configPath, good);
    chmodSync(join(root, 'passphrase'), 0o644);
    const r = await cli(['run', '--config', configPath]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/readable by group or others \(mode 0644\); run chmod 600/);
    const missing = await cli(['status', '--config', join(root, 'nope.yaml')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/cannot read it \(ENOENT\); create one with 'mtagent init/);
  }, 60_000);
});
