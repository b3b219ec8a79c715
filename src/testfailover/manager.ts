// Test failovers (DR drills): a pair's disk at a point served as an NBD
// export by the daemon while replication goes on. Each test holds its point
// against pruning, keeps its own writes in a scratch area on the retention
// volume, and is written down there so a restart serves it again at the same
// address. A test gives way to replication: when the volume runs short and
// only its history is left to drop, it is ended.
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createSecureContext } from 'node:tls';
import type { TargetDisk } from '../apply/target';
import type { Engine } from '../engine/engine';
import { MtagentError } from '../errors';
import type { Logger } from '../log';
import { NbdError } from '../nbd/export';
import { Errno } from '../nbd/protocol';
import type { NbdTls } from '../nbd/connection';
import { NbdServer, type NbdAddress } from '../nbd/server';
import { groupMembers, resolveGroupPoint } from '../recovery/groups';
import { PointView, type PointViewSource } from '../recovery/point-view';
import { isoTime, resolvePoint } from '../recovery/points';
import { catchUp, timelineOf } from '../recovery/rebuild';
import { SCRATCH_BLOCK, Scratch } from './scratch';
import { TestExport } from './test-export';
import { discardTest, dropTestRecord, findTests, testDir, writeTestRecord, type TestRecord } from './test-record';

export interface TestFailoverHost {
  engine: Engine;
  dataDir: string;
  /** The agent's certificate and key (PEM), and the CA client certificates must be signed by (null: none asked). */
  tls: { cert: string | Buffer; key: string | Buffer; clientCa: string | Buffer | null };
  log: Logger;
}

export interface StartOptions {
  /** HOST:PORT for TCP with TLS; null: the pair's Unix socket. */
  listen: string | null;
  readOnly: boolean;
  /** The scratch's cap; null: 10 % of the retention volume's capacity. */
  scratchBytes: number | null;
}

export interface TestInfo {
  pair: string;
  group: string | null;
  seq: number;
  time: string | null;
  point: string;
  uri: string;
  since: string;
  readOnly: boolean;
  scratchBytes: number;
  quotaBytes: number;
  clients: number;
}

interface Hold {
  scratch: Scratch | null;
  release: () => void;
  /** Why the point was let go while the test was still being opened; null while it is held. */
  revoked: string | null;
}

interface RunningTest {
  record: TestRecord;
  dir: string;
  view: PointView;
  scratch: Scratch;
  exp: TestExport;
  server: NbdServer;
  serverKey: string;
  uri: string;
  releaseHold: () => void;
  ending: Promise<void> | null;
}

/** The least quota: a test's scratch must take at least a filesystem's journal and superblocks. */
const MIN_QUOTA_BYTES = 16 * 1024 * 1024;

export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(listen);
  const port = m ? Number(m[3]) : NaN;
  if (!m || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new MtagentError('bad-usage', `bad --listen ${listen}: give HOST:PORT (0.0.0.0:10809, [::1]:10809)`);
  }
  return { host: (m[1] ?? m[2]) as string, port };
}

function hostForUri(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

export class TestFailovers {
  private readonly tests = new Map<string, RunningTest>();
  /** Listeners by address; a TCP one may serve several tests (a group's). */
  private readonly servers = new Map<string, { server: NbdServer; users: number }>();
  /** Pairs a start or stop is under way for. */
  private readonly busy = new Set<string>();
  private closed = false;

  private constructor(private readonly host: TestFailoverHost) {}

  private get retentionDir(): string {
    return this.host.engine.retentionDir;
  }

  /** Tests the volume holds, being served again. */
  private restoring: Promise<void> = Promise.resolve();

  /**
   * The manager. Every test the volume holds has its point held at once and
   * is served again in the background (replication does not wait for its
   * index); those no longer valid are deleted, saying why.
   */
  static open(host: TestFailoverHost): TestFailovers {
    const m = new TestFailovers(host);
    m.restoring = m.restore().catch((err: unknown) => host.log.error({ err }, 'test failovers on the volume could not be read; none is served'));
    return m;
  }

  private async restore(): Promise<void> {
    const { log } = this.host;
    const toServe: Array<{ record: TestRecord; dir: string; hold: Hold }> = [];
    for (const found of findTests(this.retentionDir)) {
      if (found.record === null) {
        log.warn({ pair: found.pairId, dir: found.dir, problem: found.problem }, 'test failover scratch left without a test: deleted');
        rmSync(found.dir, { recursive: true, force: true });
        continue;
      }
      const r = found.record;
      const problem = this.whyNotRestorable(r);
      if (problem !== null) {
        log.warn({ pair: r.pair, seq: r.seq, problem }, 'test failover not restored: ended');
        this.event(r.pair, `test failover at seq ${r.seq} not restored after the restart and ended: ${problem}`);
        discardTest(this.retentionDir, r.pair);
        continue;
      }
      this.busy.add(r.pair);
      toServe.push({ record: r, dir: found.dir, hold: this.hold(r.pair, r.seq) });
    }
    // Every point is held (above) before anything is awaited: pruning may not pass them meanwhile.
    for (const { record: r, dir, hold } of toServe) {
      try {
        if (this.closed) throw new MtagentError('daemon-stopping', 'the daemon is stopping');
        const t = await this.serve(r, dir, hold);
        log.info({ pair: r.pair, seq: r.seq, uri: t.uri, scratchBytes: t.scratch.usedBytes, indexMs: Math.round(t.view.built.ms) }, 'test failover restored');
      } catch (err) {
        hold.release();
        if (hold.revoked !== null) {
          log.warn({ pair: r.pair, seq: r.seq, reason: hold.revoked }, 'test failover ended: the retention volume is short of space');
          this.event(r.pair, `test failover at seq ${r.seq} ended: ${hold.revoked}`, 'test-failover-ended');
          discardTest(this.retentionDir, r.pair);
          continue;
        }
        // Kept for the next start: the address may be taken for now, the scratch holds the test's writes.
        if (!this.closed) log.error({ pair: r.pair, err: err instanceof Error ? err.message : String(err) }, 'test failover could not be served again; kept for the next start (mtagent test-failover stop ends it)');
      } finally {
        this.busy.delete(r.pair);
      }
    }
  }

  /** Holds a test's point; the scratch it counts is set once the scratch is open. */
  private hold(pairId: string, seq: number): Hold {
    const h: Hold = { scratch: null, release: () => undefined, revoked: null };
    h.release = this.host.engine.holdPoint(pairId, seq, {
      scratchBytes: () => h.scratch?.usedBytes ?? 0,
      onRevoked: (reason) => {
        h.revoked = reason;
        void this.end(pairId, reason, 'space', true);
      },
    });
    return h;
  }

  private whyNotRestorable(r: TestRecord): string | null {
    const { engine } = this.host;
    if (!engine.pairIds().includes(r.pair)) return `pair ${r.pair} is no longer configured`;
    const h = engine.history(r.pair);
    if (h.failedOver) return `pair ${r.pair} is failed over`;
    const t = timelineOf(engine, r.pair);
    if (r.seq > h.targetSeq || r.seq < t.oldest.seq || r.seq <= t.historyFloor) return `seq ${r.seq} is no longer in the retained history`;
    return null;
  }

  // ---- starting ------------------------------------------------------------

  async start(pairId: string, at: string, o: StartOptions): Promise<TestInfo> {
    this.claim([pairId]);
    try {
      this.checkStartable(pairId);
      const { engine } = this.host;
      await catchUp(engine, pairId);
      const unpin = engine.pin(pairId);
      try {
        const point = await resolvePoint(timelineOf(engine, pairId), at);
        const record = await this.recordFor(pairId, null, point.seq, point.time, at, o);
        return this.info(await this.begin(record));
      } finally {
        unpin();
      }
    } finally {
      this.unclaim([pairId]);
    }
  }

  /** Every pair of the group at one common point (SPEC's group POINT), one export each; all or none. */
  async startGroup(group: string, at: string, o: StartOptions): Promise<TestInfo[]> {
    const { engine } = this.host;
    const members = groupMembers(engine, group);
    this.claim(members);
    try {
      for (const id of members) this.checkStartable(id);
      for (const id of members) await catchUp(engine, id);
      const unpins = members.map((id) => engine.pin(id));
      const started: RunningTest[] = [];
      try {
        const points = await resolveGroupPoint(engine, group, at);
        for (const p of points) started.push(await this.begin(await this.recordFor(p.pairId, group, p.seq, p.time, at, o)));
        return started.map((t) => this.info(t));
      } catch (err) {
        for (const t of started) await this.end(t.record.pair, 'the group start failed', 'stop', false);
        throw err;
      } finally {
        for (const u of unpins) u();
      }
    } finally {
      this.unclaim(members);
    }
  }

  private claim(pairs: string[]): void {
    if (this.closed) throw new MtagentError('daemon-stopping', 'the daemon is stopping: start the test failover once it runs again');
    const taken = pairs.find((p) => this.busy.has(p));
    if (taken !== undefined) throw new MtagentError('test-busy', `a test failover of ${taken} is being started or stopped now: wait for it, then try again`);
    for (const p of pairs) this.busy.add(p);
  }

  private unclaim(pairs: string[]): void {
    for (const p of pairs) this.busy.delete(p);
  }

  private checkStartable(pairId: string): void {
    const { engine } = this.host;
    if (!engine.pairIds().includes(pairId)) throw new MtagentError('unknown-pair', `pair ${pairId} is not configured (mtagent status lists the pairs)`);
    const running = this.tests.get(pairId);
    if (running) {
      throw new MtagentError(
        'test-running',
        `a test failover of ${pairId} runs already (at seq ${running.record.seq}, since ${running.record.since}, ${running.uri}): stop it first with 'mtagent test-failover stop ${pairId}'`,
      );
    }
    const h = engine.history(pairId);
    if (h.failedOver) throw new MtagentError('failed-over', `pair ${pairId} is failed over: its target is the recovered disk now; a test failover needs a replicating pair`);
    if (h.target === null || h.applyPausedBy !== null) {
      const why = h.applyPausedBy ?? 'its target disk is not attached';
      throw new MtagentError(
        'apply-paused',
        `pair ${pairId}: applying is paused (${why}); a test failover reads the target as it is applied, so it can start once applying resumes (mtagent status says why)`,
      );
    }
  }

  private async recordFor(pairId: string, group: string | null, seq: number, time: number | null, spec: string, o: StartOptions): Promise<TestRecord> {
    let quota = o.scratchBytes;
    if (quota === null) quota = Math.max(MIN_QUOTA_BYTES, Math.floor((await this.host.engine.space()).capacityBytes / 10 / SCRATCH_BLOCK) * SCRATCH_BLOCK);
    if (!Number.isSafeInteger(quota) || quota < SCRATCH_BLOCK) throw new MtagentError('bad-usage', `bad --scratch-bytes ${quota}: give at least ${SCRATCH_BLOCK} bytes`);
    return { version: 1, pair: pairId, group, seq, time, spec, since: new Date().toISOString(), readOnly: o.readOnly, quotaBytes: quota, listen: o.listen === null ? null : parseListen(o.listen) };
  }

  /** Serves a new test and writes it down; undone entirely if any step fails. */
  private async begin(record: TestRecord): Promise<RunningTest> {
    const dir = testDir(this.retentionDir, record.pair);
    // Whatever a test that never finished starting left there.
    rmSync(dir, { recursive: true, force: true });
    const t = await this.serve(record, dir, this.hold(record.pair, record.seq));
    try {
      // An ephemeral port asked is the port kept: a restart serves the test at the same address.
      if (record.listen !== null && record.listen.port === 0) record.listen.port = t.server.port ?? 0;
      writeTestRecord(dir, record);
    } catch (err) {
      await this.end(record.pair, 'its record could not be written', 'stop', false);
      throw err;
    }
    this.host.log.info({ pair: record.pair, seq: record.seq, point: record.spec, uri: t.uri, quotaBytes: record.quotaBytes, readOnly: record.readOnly, indexMs: Math.round(t.view.built.ms), beforeImages: t.view.built.beforeImages }, 'test failover started');
    this.event(record.pair, `test failover started at seq ${record.seq} (${record.spec}): ${t.uri}`);
    return t;
  }

  private async serve(record: TestRecord, dir: string, hold: Hold): Promise<RunningTest> {
    const { engine } = this.host;
    const pairId = record.pair;
    const h = engine.history(pairId);
    let scratch: Scratch | null = null;
    const releaseHold = hold.release;
    let view: PointView | null = null;
    let server: { server: NbdServer; key: string } | null = null;
    try {
      view = await PointView.open(this.viewSource(pairId), record.seq);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      scratch = await Scratch.open(dir, h.diskBytes, record.quotaBytes);
      hold.scratch = scratch;
      const exp = new TestExport(pairId, view, scratch, h.sectorBytes, record.readOnly);
      server = await this.serverFor(record);
      server.server.add(exp);
      const uri = record.listen === null ? `nbd+unix:///${pairId}?socket=${this.socketPath(pairId)}` : `nbds://${hostForUri(record.listen.host)}:${server.server.port ?? record.listen.port}/${pairId}`;
      // Space ran short while the index was built: the test never starts.
      if (hold.revoked !== null) throw new MtagentError('test-ended', `the test failover of ${pairId} was ended before it was served: ${hold.revoked}`);
      const t: RunningTest = { record, dir, view, scratch, exp, server: server.server, serverKey: server.key, uri, releaseHold, ending: null };
      this.tests.set(pairId, t);
      return t;
    } catch (err) {
      releaseHold();
      if (server) {
        server.server.remove(pairId);
        this.releaseServer(server.key);
      }
      await view?.close();
      await scratch?.close();
      throw err;
    }
  }

  /** What the view reads: the target as the pair has it at each read (it may be re-attached meanwhile). */
  private viewSource(pairId: string): PointViewSource {
    const { engine } = this.host;
    const h = engine.history(pairId);
    return {
      pairId,
      diskBytes: h.diskBytes,
      undo: h.undo,
      get target(): TargetDisk {
        const target = engine.history(pairId).target;
        if (target === null) throw new NbdError(Errno.EIO, `the target disk of ${pairId} is not attached`);
        return target;
      },
    };
  }

  private socketPath(pairId: string): string {
    return join(this.host.dataDir, 'nbd', `${pairId}.sock`);
  }

  private async serverFor(record: TestRecord): Promise<{ server: NbdServer; key: string }> {
    let address: NbdAddress;
    let key: string;
    if (record.listen === null) {
      address = { kind: 'unix', path: this.socketPath(record.pair) };
      key = `unix:${address.path}`;
      mkdirSync(join(this.host.dataDir, 'nbd'), { recursive: true, mode: 0o700 });
    } else {
      address = { kind: 'tcp', host: record.listen.host, port: record.listen.port };
      // Each ephemeral port asked is a listener of its own.
      key = record.listen.port === 0 ? `tcp:${record.pair}:ephemeral` : `tcp:${record.listen.host}:${record.listen.port}`;
    }
    const shared = this.servers.get(key);
    if (shared) {
      shared.users++;
      return { server: shared.server, key };
    }
    const server = new NbdServer({
      address,
      tls: address.kind === 'tcp' ? this.tls() : null,
      onError: (err, what) => this.host.log.warn({ err: err instanceof Error ? err.message : String(err) }, `NBD: ${what}`),
    });
    try {
      await server.listen();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? String(err);
      const where = address.kind === 'unix' ? address.path : `${address.host}:${address.port}`;
      throw new MtagentError('listen-failed', `cannot serve the test failover on ${where} (${code}): choose another --listen HOST:PORT, or stop what uses it`);
    }
    // The key may be taken by now (two starts on one address at once).
    const raced = this.servers.get(key);
    if (raced) {
      await server.close();
      raced.users++;
      return { server: raced.server, key };
    }
    this.servers.set(key, { server, users: 1 });
    return { server, key };
  }

  private releaseServer(key: string): void {
    const s = this.servers.get(key);
    if (!s) return;
    if (--s.users > 0) return;
    this.servers.delete(key);
    void s.server.close();
  }

  private tls(): NbdTls {
    const { cert, key, clientCa } = this.host.tls;
    return { context: createSecureContext({ cert, key, ...(clientCa !== null ? { ca: clientCa } : {}) }), requireClientCert: clientCa !== null };
  }

  // ---- ending ----------------------------------------------------------------

  async stop(pairId: string): Promise<{ pair: string; seq: number }> {
    if (this.busy.has(pairId)) throw new MtagentError('test-busy', `the test failover of ${pairId} is being started, restored or stopped now: wait for it, then try again`);
    const t = this.tests.get(pairId);
    if (!t) {
      // A test the volume holds that could not be served (its address was taken) ends too.
      if (discardTest(this.retentionDir, pairId)) return { pair: pairId, seq: 0 };
      throw new MtagentError('no-test', `no test failover of ${pairId} runs (mtagent test-failover list shows those that do)`);
    }
    await this.end(pairId, 'stopped by the operator', 'stop', true);
    return { pair: pairId, seq: t.record.seq };
  }

  async stopGroup(group: string): Promise<Array<{ pair: string; seq: number }>> {
    const members = groupMembers(this.host.engine, group).filter((id) => this.tests.has(id));
    if (members.length === 0) throw new MtagentError('no-test', `no test failover of group ${group} runs (mtagent test-failover list shows those that do)`);
    const out: Array<{ pair: string; seq: number }> = [];
    for (const id of members) out.push(await this.stop(id));
    return out;
  }

  /** Ends a pair's test, if one runs, before something changes its history (failover, commit, purge, removal). */
  async endFor(pairId: string, why: string): Promise<void> {
    if (this.tests.has(pairId)) await this.end(pairId, why, 'stop', true);
    else discardTest(this.retentionDir, pairId);
  }

  /**
   * Ends a test: the record goes first (no restart brings back half a test),
   * then the point, the clients and the listener, then the scratch.
   */
  private end(pairId: string, reason: string, kind: 'stop' | 'space', report: boolean): Promise<void> {
    const t = this.tests.get(pairId);
    if (!t) return Promise.resolve();
    t.ending ??= (async () => {
      t.releaseHold();
      dropTestRecord(t.dir);
      t.server.remove(pairId);
      this.releaseServer(t.serverKey);
      await t.view.close();
      await t.scratch.destroy();
      this.tests.delete(pairId);
      if (!report) return;
      const fields = { pair: pairId, seq: t.record.seq, reason, scratchBytes: t.scratch.usedBytes };
      if (kind === 'space') {
        this.host.log.warn(fields, 'test failover ended: the retention volume is short of space');
        this.event(pairId, `test failover at seq ${t.record.seq} ended: ${reason}`, 'test-failover-ended');
      } else {
        this.host.log.info(fields, 'test failover stopped');
        this.event(pairId, `test failover at seq ${t.record.seq} stopped: ${reason}`);
      }
    })();
    return t.ending;
  }

  private event(pairId: string, message: string, kind = 'test-failover'): void {
    try {
      this.host.engine.catalog.addEvent(pairId, kind, message);
    } catch (err) {
      this.host.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'the event could not be recorded in the catalog');
    }
  }

  // ---- reporting -------------------------------------------------------------

  list(): TestInfo[] {
    return [...this.tests.values()].filter((t) => t.ending === null).map((t) => this.info(t)).sort((a, b) => a.pair.localeCompare(b.pair));
  }

  of(pairId: string): TestInfo | null {
    const t = this.tests.get(pairId);
    return t && t.ending === null ? this.info(t) : null;
  }

  private info(t: RunningTest): TestInfo {
    return {
      pair: t.record.pair,
      group: t.record.group,
      seq: t.record.seq,
      time: isoTime(t.record.time),
      point: t.record.spec,
      uri: t.uri,
      since: t.record.since,
      readOnly: t.record.readOnly,
      scratchBytes: t.scratch.usedBytes,
      quotaBytes: t.record.quotaBytes,
      clients: t.server.clients(t.record.pair),
    };
  }

  /** Stops serving, keeping every test on the volume for the next start. */
  async close(): Promise<void> {
    this.closed = true;
    await this.restoring;
    const tests = [...this.tests.values()];
    this.tests.clear();
    for (const s of this.servers.values()) await s.server.close();
    this.servers.clear();
    for (const t of tests) {
      t.releaseHold();
      // What a client wrote and was answered for without FLUSH is kept too, when it can be.
      await t.scratch.flush().catch(() => undefined);
      await t.view.close();
      await t.scratch.close();
    }
  }
}
