// `mtagent test-failover` against the real daemon and real NBD clients
// (nbdcopy, qemu-io), while a process server keeps streaming into the pair.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReplicationClient } from '../../src/simulator/client';
import type { TestInfo } from '../../src/testfailover/manager';
import { RunningDaemon, cli, freePort, makeInstallation, rssOf, sampleRss } from '../helpers/daemon';

const run = promisify(execFile);
const KiB = 1024;
const DISK = 4096 * KiB;
const WRITE = 32 * KiB;
const TAG_EVERY = 50;

/** Item seq is a tag every TAG_EVERY, else a write of WRITE bytes of (seq & 0xff) at a place that moves around the disk. */
const offsetOf = (seq: number): number => ((seq * 7) % (DISK / WRITE)) * WRITE;
const isTag = (seq: number): boolean => seq % TAG_EVERY === 0;
/** Source time of item seq (µs): seq milliseconds after 2026-12-01. */
const T0 = Date.parse('2026-12-01T00:00:00Z') * 1000;
const timeOf = (seq: number): number => T0 + seq * 1000;

function imageAt(seq: number): Buffer {
  const img = Buffer.alloc(DISK);
  for (let s = 1; s <= seq; s++) if (!isTag(s)) img.fill(s & 0xff, offsetOf(s), offsetOf(s) + WRITE);
  return img;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Streams items into a pair, ~64 in flight, until stopped. */
class Streamer {
  sent = 0;
  acked = 0;
  private stopped = false;
  private loop: Promise<void> | null = null;
  constructor(
    private readonly c: ReplicationClient,
    private readonly stream: number,
    private readonly group: string | null = null,
  ) {
    c.on('ack', (s: number, durable: number) => {
      if (s === stream) this.acked = Math.max(this.acked, durable);
    });
  }

  start(): void {
    this.loop = (async () => {
      while (!this.stopped && !this.c.closed) {
        if (this.sent - this.acked < 64) {
          const records = [];
          for (let i = 0; i < 8; i++) {
            const seq = ++this.sent;
            if (isTag(seq)) {
              if (records.length > 0) this.c.sendRecords(records.splice(0));
              this.c.sendJson({ type: 'tag', stream: this.stream, seq, time: timeOf(seq), kind: 'app', name: `t-${seq}`, ...(this.group ? { group: `${this.group}-${seq}` } : {}) });
            } else records.push({ stream: this.stream, seq, offset: offsetOf(seq), time: timeOf(seq), data: Buffer.alloc(WRITE, seq & 0xff) });
          }
          if (records.length > 0) this.c.sendRecords(records);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
  }

  async until(acked: number): Promise<void> {
    while (this.acked < acked) await new Promise((r) => setTimeout(r, 5));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

async function nbdcopy(uri: string, out: string): Promise<Buffer> {
  await run('nbdcopy', [uri, out]);
  return readFileSync(out);
}

describe('test failover', () => {
  let root: string;
  let configPath: string;
  let daemon: RunningDaemon;
  let client: ReplicationClient;
  let streamer: Streamer;

  const start = async (...args: string[]): Promise<TestInfo> => {
    const r = await cli(['test-failover', 'start', ...args, '--json', '--config', configPath]);
    expect(r.code, r.stderr + daemon.output.slice(-2000)).toBe(0);
    return JSON.parse(r.stdout) as TestInfo;
  };
  const stop = async (pair: string): Promise<void> => {
    const r = await cli(['test-failover', 'stop', pair, '--config', configPath]);
    expect(r.code, r.stderr).toBe(0);
  };
  const list = async (): Promise<TestInfo[]> => {
    const r = await cli(['test-failover', 'list', '--json', '--config', configPath]);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as TestInfo[];
  };

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'mtagent-drill-'));
    configPath = await makeInstallation(root, [
      { id: 'p', sizeBytes: DISK },
      { id: 'g1', sizeBytes: DISK, group: 'g' },
      { id: 'g2', sizeBytes: DISK, group: 'g' },
    ]);
    daemon = new RunningDaemon(configPath);
    await daemon.start();
    client = await daemon.client();
    const { stream } = await client.open('p', DISK);
    streamer = new Streamer(client, stream);
    streamer.start();
    await streamer.until(400);
  }, 60_000);

  afterAll(async () => {
    await streamer?.stop();
    await client?.close();
    await daemon?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  it('serves exactly what recover writes, at a seq, a tag, a time and latest-app, while the stream goes on', async () => {
    const specs: Array<[string, number | null]> = [
      ['seq:123', 123],
      ['tag:t-200', 200],
      [new Date(timeOf(151) / 1000).toISOString(), 151],
      ['latest-app', null],
    ];
    for (const [spec, expected] of specs) {
      const before = streamer.acked;
      const t = await start('p', '--at', spec, '--read-only');
      if (expected !== null) expect(t.seq).toBe(expected);
      else expect(isTag(t.seq)).toBe(true);
      expect(t.uri).toBe(`nbd+unix:///p?socket=${join(root, 'data', 'nbd', 'p.sock')}`);
      const served = await nbdcopy(t.uri, join(root, 'served.img'));
      const rec = await cli(['recover', 'p', '--at', `seq:${t.seq}`, '--out', join(root, 'recovered.img'), '--force', '--json', '--config', configPath]);
      expect(rec.code, rec.stderr).toBe(0);
      expect(sha(served)).toBe((JSON.parse(rec.stdout) as { sha256: string }).sha256);
      expect(served.equals(imageAt(t.seq))).toBe(true);
      // Replication went on meanwhile.
      await streamer.until(before + 100);
      await stop('p');
      expect(existsSync(join(root, 'data', 'nbd', 'p.sock'))).toBe(false);
      expect(existsSync(join(root, 'retention', 'tests', 'p'))).toBe(false);
    }
  }, 120_000);

  it('keeps flushed writes through kill -9, at the same address, and never touches the target', async () => {
    const t = await start('p', '--at', 'seq:301');
    const io = (...cmds: string[]): Promise<{ stdout: string }> => run('qemu-io', ['-f', 'raw', t.uri, ...cmds.flatMap((c) => ['-c', c])]);
    await io('write -P 0xab 4096 65536', 'flush');
    await streamer.stop();
    await client.close();
    await daemon.kill();
    await daemon.start();
    // Served again in the background once the daemon runs.
    const served = async (): Promise<TestInfo[]> => {
      let tests: TestInfo[] = [];
      for (let i = 0; i < 100 && tests.length === 0; i++) {
        const list = await cli(['test-failover', 'list', '--json', '--config', configPath]);
        expect(list.code, list.stderr).toBe(0);
        tests = JSON.parse(list.stdout) as TestInfo[];
        if (tests.length === 0) await new Promise((r) => setTimeout(r, 100));
      }
      return tests;
    };
    expect(await served()).toMatchObject([{ pair: 'p', seq: 301, uri: t.uri }]);
    // And after a stop with SIGTERM too.
    expect(await daemon.stop()).toBe(0);
    await daemon.start();
    const tests = await served();
    expect(tests).toMatchObject([{ pair: 'p', seq: 301, uri: t.uri }]);
    expect(tests[0]?.scratchBytes).toBeGreaterThanOrEqual(65536);
    const copied = await nbdcopy(t.uri, join(root, 'served.img'));
    const expected = imageAt(301);
    expected.fill(0xab, 4096, 4096 + 65536);
    expect(copied.equals(expected)).toBe(true);
    const rec = await cli(['recover', 'p', '--at', 'seq:301', '--out', join(root, 'recovered.img'), '--force', '--config', configPath]);
    expect(rec.code, rec.stderr).toBe(0);
    expect(readFileSync(join(root, 'recovered.img')).equals(imageAt(301))).toBe(true);
    // The status and the heartbeat's pair row say it runs.
    const status = JSON.parse((await cli(['status', '--json', '--config', configPath])).stdout) as { pairs: Array<{ pair: string; testFailover: TestInfo | null }> };
    expect(status.pairs.find((p) => p.pair === 'p')?.testFailover).toMatchObject({ seq: 301 });
    client = await daemon.client();
    const reopened = await client.open('p', DISK);
    streamer = new Streamer(client, reopened.stream);
    streamer.sent = streamer.acked = reopened.durableSeq;
    streamer.start();
    await streamer.until(streamer.acked + 50);
    await stop('p');
  }, 120_000);

  it('answers ENOSPC past the scratch quota, EPERM when read-only, and refuses a second test', async () => {
    const t = await start('p', '--at', 'seq:250', '--scratch-bytes', '256k');
    await expect(run('qemu-io', ['-f', 'raw', t.uri, '-c', 'write -P 1 0 1M'])).rejects.toThrow();
    const small = await run('qemu-io', ['-f', 'raw', t.uri, '-c', 'write -P 1 0 128k']);
    expect(small.stdout).toContain('wrote 131072');
    // TRIM and WRITE_ZEROES store nothing: a whole-disk discard (16 x the quota) is taken,
    // frees what the test had written there, and leaves the quota for data.
    await run('qemu-io', ['-f', 'raw', t.uri, '-c', `discard 0 ${DISK}`, '-c', 'write -z 64k 2M', '-c', 'flush']);
    expect((await list()).find((x) => x.pair === 'p')?.scratchBytes).toBe(0);
    const after = await run('qemu-io', ['-f', 'raw', t.uri, '-c', 'write -P 3 0 192k', '-c', 'read -P 0 192k 3M']);
    expect(after.stdout).toContain('wrote 196608');
    expect(after.stdout).not.toMatch(/Pattern verification failed/);
    expect((await list()).find((x) => x.pair === 'p')?.scratchBytes).toBe(192 * KiB);
    // A write refused for the quota changes nothing: the blocks still read as before.
    await expect(run('qemu-io', ['-f', 'raw', t.uri, '-c', 'write -P 4 0 1M'])).rejects.toThrow();
    expect((await run('qemu-io', ['-f', 'raw', t.uri, '-c', 'read -P 3 0 192k'])).stdout).not.toMatch(/Pattern verification failed/);
    const again = await cli(['test-failover', 'start', 'p', '--at', 'latest', '--config', configPath]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/runs already.*test-failover stop p/);
    await stop('p');
    const ro = await start('p', '--at', 'seq:250', '--read-only');
    const refused = await run('qemu-io', ['-f', 'raw', '-r', ro.uri, '-c', 'write 0 4k']).catch((e: { stdout: string; stderr: string }) => e);
    expect(`${refused.stdout}${refused.stderr}`).toMatch(/read-only|Operation not permitted|Permission denied/i);
    await stop('p');
    const none = await cli(['test-failover', 'stop', 'p', '--config', configPath]);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/no test failover of p runs/);
  }, 60_000);

  it('serves over TCP with TLS at the address asked, and only with TLS', async () => {
    const port = await freePort();
    const t = await start('p', '--at', 'seq:199', '--read-only', '--listen', `127.0.0.1:${port}`);
    expect(t.uri).toBe(`nbds://127.0.0.1:${port}/p`);
    const certs = join(root, 'certs');
    mkdirSync(certs, { recursive: true });
    copyFileSync(daemon.config.tls.cert, join(certs, 'ca-cert.pem'));
    expect((await nbdcopy(`${t.uri}?tls-certificates=${certs}`, join(root, 'served.img'))).equals(imageAt(199))).toBe(true);
    await expect(run('nbdinfo', [`nbd://127.0.0.1:${port}/p`])).rejects.toThrow();
    await stop('p');
  }, 60_000);

  it('lets hostile clients harm neither the export, the daemon\'s memory, nor replication', async () => {
    const t = await start('p', '--at', 'seq:250');
    const socket = join(root, 'data', 'nbd', 'p.sock');
    const pid = daemon.proc?.pid as number;
    const rss = sampleRss(pid, 50);
    const before = rssOf(pid);
    const ackedBefore = streamer.acked;
    const hello = (s: Socket, opt: Buffer): void => {
      const flags = Buffer.alloc(4);
      flags.writeUInt32BE(3, 0);
      s.write(Buffer.concat([flags, opt]));
    };
    const option = (code: number, data: Buffer): Buffer => {
      const b = Buffer.alloc(16);
      b.writeBigUInt64BE(0x49484156454f5054n, 0);
      b.writeUInt32BE(code, 8);
      b.writeUInt32BE(data.length, 12);
      return Buffer.concat([b, data]);
    };
    const request = (type: number, offset: bigint, length: number, handle: bigint): Buffer => {
      const b = Buffer.alloc(28);
      b.writeUInt32BE(0x25609513, 0);
      b.writeUInt16BE(0, 4);
      b.writeUInt16BE(type, 6);
      b.writeBigUInt64BE(handle, 8);
      b.writeBigUInt64BE(offset, 16);
      b.writeUInt32BE(length, 24);
      return b;
    };
    const clients: Socket[] = [];
    const open = (): Socket => {
      const s = connect(socket);
      s.on('error', () => undefined);
      clients.push(s);
      return s;
    };
    // Bad magic in an option; an unknown option; then a client that never reads its replies.
    hello(open(), Buffer.from('not an option at all, just noise'));
    hello(open(), option(0x7777, Buffer.alloc(8)));
    for (let i = 0; i < 4; i++) {
      const s = open();
      s.pause();
      hello(s, option(1, Buffer.from('p')));
      const reqs: Buffer[] = [];
      for (let h = 0; h < 2000; h++) reqs.push(request(0, 0n, 4 * 1024 * 1024, BigInt(h)));
      // Past the end, a 4 GiB length, unaligned writes with no payload following.
      reqs.push(request(0, BigInt(DISK), 4096, 9001n), request(0, 0n, 0xffffffff, 9002n), request(1, 3n, 5, 9003n));
      s.write(Buffer.concat(reqs));
    }
    await new Promise((r) => setTimeout(r, 3000));
    await streamer.until(ackedBefore + 50);
    // A well-behaved client is still served exactly.
    expect((await nbdcopy(t.uri, join(root, 'served.img'))).equals(imageAt(250))).toBe(true);
    rss.stop();
    for (const s of clients) s.destroy();
    // 4 clients × 32 MiB in flight at most, and what node keeps besides.
    expect(rss.peak - before).toBeLessThan(256 * 1024 * 1024);
    await stop('p');
  }, 60_000);

  it('starts a group at one group point, one export each, and stops it', async () => {
    const streams = [];
    for (const id of ['g1', 'g2']) {
      const { stream } = await client.open(id, DISK);
      const s = new Streamer(client, stream, 'g');
      s.start();
      streams.push(s);
    }
    for (const s of streams) await s.until(120);
    const r = await cli(['test-failover', 'start', '--group', 'g', '--at', 'latest-app', '--read-only', '--json', '--config', configPath]);
    expect(r.code, r.stderr).toBe(0);
    const tests = JSON.parse(r.stdout) as TestInfo[];
    expect(tests.map((t) => t.pair)).toEqual(['g1', 'g2']);
    for (const t of tests) {
      expect(t.group).toBe('g');
      expect((await nbdcopy(t.uri, join(root, `${t.pair}.img`))).equals(imageAt(t.seq))).toBe(true);
    }
    for (const s of streams) await s.stop();
    const stopped = await cli(['test-failover', 'stop', '--group', 'g', '--config', configPath]);
    expect(stopped.code, stopped.stderr).toBe(0);
    expect((JSON.parse((await cli(['test-failover', 'list', '--json', '--config', configPath])).stdout) as TestInfo[]).length).toBe(0);
    // A failover of the pair ends its test first.
    await start('g1', '--at', 'latest');
    const failover = await cli(['failover', 'g1', '--at', 'latest', '--config', configPath]);
    expect(failover.code, failover.stderr).toBe(0);
    expect((JSON.parse((await cli(['test-failover', 'list', '--json', '--config', configPath])).stdout) as TestInfo[]).length).toBe(0);
    expect(existsSync(join(root, 'data', 'nbd', 'g1.sock'))).toBe(false);
    expect(existsSync(join(root, 'retention', 'tests', 'g1'))).toBe(false);
  }, 60_000);
});

describe('test failover without a daemon', () => {
  it('exits 1 saying the daemon serves it', async () => {
    const root = mkdtempSync(join(tmpdir(), 'mtagent-drill-'));
    try {
      const configPath = await makeInstallation(root, [{ id: 'p', sizeBytes: DISK }]);
      const r = await cli(['test-failover', 'start', 'p', '--at', 'latest', '--config', configPath]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/served by the running daemon.*start it/);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
