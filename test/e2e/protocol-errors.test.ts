// The protocol's errors (docs/protocol.md) against the real daemon: every error, what it ends, and that
// nothing acknowledged is lost.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crc32c } from '../../src/native';
import { encodeRecords } from '../../src/protocol/records';
import { AgentRefusal, ReplicationClient } from '../../src/simulator/client';
import { RunningDaemon, cli, makeInstallation, rssOf, sampleRss } from '../helpers/daemon';
import { useTempDir } from '../helpers/temp-dir';
import type { AgentMessage, ErrorMessage } from '../../src/protocol/messages';
import { mkdtempSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';

const MiB = 1024 * 1024;
const DISK = 4 * MiB;
const pairs = Array.from({ length: 17 }, (_, i) => ({ id: `p${i}`, sizeBytes: DISK }));
let root = '';
let daemon: RunningDaemon;
let helloTimeout: Promise<{ code: number; ms: number }>;
useTempDir();

function block(seq: number, size = 4096): Buffer {
  const b = Buffer.alloc(size, seq & 0xff);
  b.writeUInt32LE(seq, 0);
  return b;
}

function rawSocket(perMessageDeflate = true): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${daemon.url}/v1/replicate`, { ca: readFileSync(daemon.config.tls.cert), perMessageDeflate });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

function closeOf(ws: WebSocket): Promise<{ code: number; messages: AgentMessage[] }> {
  const messages: AgentMessage[] = [];
  ws.on('message', (d) => messages.push(JSON.parse(d.toString()) as AgentMessage));
  return new Promise((resolve) => ws.once('close', (code) => resolve({ code, messages })));
}

function errorOn(c: ReplicationClient, stream?: number): Promise<ErrorMessage> {
  return c.next((m) => m.type === 'error' && (stream === undefined || m.stream === stream)) as Promise<ErrorMessage>;
}

async function ackOf(c: ReplicationClient, stream: number, seq: number): Promise<void> {
  await c.next((m) => m.type === 'ack' && m.stream === stream && m.durableSeq >= seq);
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'mtagent-e2e-'));
  daemon = new RunningDaemon(await makeInstallation(root, pairs));
  await daemon.start();
  // A client that never says hello: the agent closes after 10 s (checked last).
  const started = Date.now();
  const ws = await rawSocket();
  helloTimeout = closeOf(ws).then(({ code }) => ({ code, ms: Date.now() - started }));
}, 30_000);

afterAll(async () => {
  if (daemon) expect(await daemon.stop()).toBe(0);
  rmSync(root, { recursive: true, force: true });
});

describe('handshake', () => {
  it('refuses a bad proof with auth-failed and close 4401', async () => {
    const c = daemon.clientOptions({ proof: '0'.repeat(64) });
    const client = new ReplicationClient(c);
    const err = await client.connect().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AgentRefusal);
    expect(err).toMatchObject({ code: 'auth-failed' });
    await new Promise((r) => setTimeout(r, 100));
    expect(client.closeCode).toBe(4401);
  });

  it('refuses a wrong passphrase the same way', async () => {
    await expect(daemon.client({ passphrase: Buffer.from('not-the-passphrase') })).rejects.toMatchObject({ code: 'auth-failed' });
  });

  it('refuses an unknown protocol with protocol-version and close 4400', async () => {
    const client = new ReplicationClient(daemon.clientOptions({ protocol: 2 }));
    await expect(client.connect()).rejects.toMatchObject({ code: 'protocol-version' });
    await new Promise((r) => setTimeout(r, 100));
    expect(client.closeCode).toBe(4400);
  });

  it('refuses anything but hello before welcome with auth-failed and close 4401', async () => {
    const ws = await rawSocket();
    const closed = closeOf(ws);
    await new Promise((r) => ws.once('message', r)); // the challenge
    ws.send(encodeRecords([{ stream: 1, seq: 1, offset: 0, time: 1, data: block(1) }]));
    const { code, messages } = await closed;
    expect(code).toBe(4401);
    expect(messages.at(-1)).toMatchObject({ type: 'error', code: 'auth-failed' });
  });

  it.each([
    { how: 'plain', compress: false },
    // 60 MiB of ones deflate to about 60 KiB: what counts is what arrives.
    { how: 'deflated', compress: true },
  ])('refuses a peer that sends more than 4 KiB before its hello is accepted ($how), without reading the rest', async ({ compress }) => {
    const pid = daemon.proc?.pid as number;
    const before = rssOf(pid);
    const rss = sampleRss(pid, 10);
    try {
      const ws = await rawSocket(compress);
      const closed = closeOf(ws);
      await new Promise((r) => ws.once('message', r)); // the challenge
      // One 60 MiB message, under the 64 MiB max payload: ws alone would have
      // assembled all of it before the agent saw it.
      ws.send(Buffer.alloc(60 * MiB, 1));
      const { code, messages } = await closed;
      expect(code).toBe(4401);
      expect(messages.at(-1)).toMatchObject({ type: 'error', code: 'auth-failed', message: expect.stringContaining('before the handshake ended') });
      expect(rss.peak - before).toBeLessThan(24 * MiB);
    } finally {
      rss.stop();
    }
    // The agent goes on serving everyone else.
    const c = await daemon.client();
    await c.close();
  });

  it('accepts permessage-deflate when the client offers it', async () => {
    const c = await daemon.client({ compress: true });
    expect(c.ws?.extensions).toContain('permessage-deflate');
    const o = await c.open('p15', DISK);
    c.sendRecords([{ stream: o.stream, seq: o.durableSeq + 1, offset: 0, time: 1, data: Buffer.alloc(64 * 1024, 7) }]);
    await ackOf(c, o.stream, o.durableSeq + 1);
    await c.close();
  });
});

describe('opening pairs', () => {
  it('answers unknown-pair, size-mismatch and bad-request, and keeps the connection', async () => {
    const c = await daemon.client();
    await expect(c.open('nope', DISK)).rejects.toMatchObject({ code: 'unknown-pair' });
    await expect(c.open('p0', 2 * DISK)).rejects.toMatchObject({ code: 'size-mismatch' });
    await expect(c.open('p0', DISK, 1024)).rejects.toMatchObject({ code: 'bad-request' });
    await expect(c.open('../etc', DISK)).rejects.toMatchObject({ code: 'bad-request' });
    const o = await c.open('p0', DISK);
    expect(o).toMatchObject({ type: 'opened', pair: 'p0', durableSeq: 0, needsResync: true });
    expect(c.closed).toBe(false);
    await c.close();
  });
});

describe('records and control items', () => {
  it('acknowledges writes only once durable, cumulatively', async () => {
    const c = await daemon.client();
    const o = await c.open('p1', DISK);
    c.sendRecords(Array.from({ length: 10 }, (_, i) => ({ stream: o.stream, seq: i + 1, offset: i * 4096, time: 1000 + i, data: block(i + 1) })));
    c.sendJson({ type: 'tag', stream: o.stream, seq: 11, time: 2000, kind: 'app', name: 'vss-1' });
    c.sendJson({ type: 'tick', stream: o.stream, seq: 12, time: 3000 });
    await ackOf(c, o.stream, 12);
    await c.close();
  });

  const streamErrors: Array<[string, (stream: number, seq: number) => Buffer | object, string]> = [
    ['misaligned offset', (s, q) => encodeRecords([{ stream: s, seq: q, offset: 100, time: 1, data: block(q) }]), 'bad-record'],
    ['length not a sector multiple', (s, q) => encodeRecords([{ stream: s, seq: q, offset: 0, time: 1, data: block(q, 1000) }]), 'bad-record'],
    ['out of bounds', (s, q) => encodeRecords([{ stream: s, seq: q, offset: DISK - 512, time: 1, data: block(q) }]), 'bad-record'],
    ['over 4 MiB', (s, q) => encodeRecords([{ stream: s, seq: q, offset: 0, time: 1, data: Buffer.alloc(4 * MiB + 512) }]), 'bad-record'],
    [
      'bad crc',
      (s, q) => {
        const m = encodeRecords([{ stream: s, seq: q, offset: 0, time: 1, data: block(q) }]);
        m.writeUInt32LE((crc32c(block(q)) ^ 1) >>> 0, 28);
        return m;
      },
      'bad-record',
    ],
    ['seq gap', (s, q) => encodeRecords([{ stream: s, seq: q + 1, offset: 0, time: 1, data: block(q) }]), 'seq-gap'],
    ['control item seq gap', (s, q) => ({ type: 'tick', stream: s, seq: q + 5, time: 1 }), 'seq-gap'],
  ];

  it.each(streamErrors)('ends the stream on %s, keeps the connection, and loses nothing before it', async (_name, bad, code) => {
    const pair = `p${2 + streamErrors.findIndex((e) => e[0] === _name)}`;
    const c = await daemon.client();
    const o = await c.open(pair, DISK);
    const base = o.durableSeq;
    // Three good writes and the bad one in one message: the good ones stay.
    const good = encodeRecords([1, 2, 3].map((k) => ({ stream: o.stream, seq: base + k, offset: k * 4096, time: 10 + k, data: block(base + k) })));
    const badMsg = bad(o.stream, base + 4);
    const errored = errorOn(c, o.stream);
    if (Buffer.isBuffer(badMsg)) c.sendBinary(Buffer.concat([good, badMsg]));
    else {
      c.sendBinary(good);
      c.sendJson(badMsg);
    }
    expect(await errored).toMatchObject({ code, stream: o.stream, seq: expect.any(Number) });
    // Later records for the ended stream are dropped, not malformed.
    c.sendRecords([{ stream: o.stream, seq: base + 4, offset: 0, time: 1, data: block(1) }]);
    const again = await c.open(pair, DISK);
    expect(again.durableSeq).toBe(base + 3);
    expect(c.closed).toBe(false);
    await c.close();
  });

  it('drops what still arrives for an ended stream, however much, and keeps reading the connection', async () => {
    const c = await daemon.client();
    const o = await c.open('p2', DISK);
    const errored = errorOn(c, o.stream);
    c.sendRecords([{ stream: o.stream, seq: o.durableSeq + 2, offset: 0, time: 1, data: block(1) }]);
    expect(await errored).toMatchObject({ code: 'seq-gap' });
    // Twice the connection's 24 MiB window of messages whose every record is dropped.
    const dropped = encodeRecords([{ stream: o.stream, seq: o.durableSeq + 1, offset: 0, time: 1, data: Buffer.alloc(MiB, 7) }]);
    for (let i = 0; i < 48; i++) c.sendBinary(dropped);
    c.sendJson({ type: 'open', pair: 'p2', diskBytes: DISK, sectorBytes: 512 });
    const reopened = await c.next((m) => m.type === 'opened' && m.pair === 'p2', 10_000);
    expect(reopened).toMatchObject({ durableSeq: o.durableSeq });
    await c.close();
  });

  const connectionErrors: Array<[string, (stream: number) => Buffer | string]> = [
    ['unparsable JSON', () => '{"type": "tick", '],
    ['an unknown message type', () => JSON.stringify({ type: 'dance' })],
    ['a truncated record', (s) => encodeRecords([{ stream: s, seq: 1, offset: 0, time: 1, data: block(1) }]).subarray(0, 100)],
    ['a truncated header', (s) => encodeRecords([{ stream: s, seq: 1, offset: 0, time: 1, data: block(1) }]).subarray(0, 20)],
    ['an unknown record kind', (s) => { const m = encodeRecords([{ stream: s, seq: 1, offset: 0, time: 1, data: block(1) }]); m[0] = 9; return m; }],
    ['an unknown stream', (s) => encodeRecords([{ stream: s + 100, seq: 1, offset: 0, time: 1, data: block(1) }])],
  ];

  it.each(connectionErrors)('closes the connection with malformed (4400) on %s, keeping what was acked', async (name, bad) => {
    const pair = `p${9 + connectionErrors.findIndex((e) => e[0] === name)}`;
    const c = await daemon.client();
    const o = await c.open(pair, DISK);
    const base = o.durableSeq;
    c.sendRecords([{ stream: o.stream, seq: base + 1, offset: 0, time: 5, data: block(base + 1) }]);
    await ackOf(c, o.stream, base + 1);
    const errored = errorOn(c);
    const closed = new Promise<number>((r) => c.once('close', (code) => r(code)));
    const msg = bad(o.stream);
    if (typeof msg === 'string') c.sendText(msg);
    else c.sendBinary(msg);
    expect(await errored).toMatchObject({ code: 'malformed' });
    expect(await closed).toBe(4400);
    const c2 = await daemon.client();
    expect((await c2.open(pair, DISK)).durableSeq).toBe(base + 1);
    await c2.close();
  });

  it('closes a connection whose message exceeds the 64 MiB max payload (1009)', async () => {
    const c = await daemon.client();
    const closed = new Promise<number>((r) => c.once('close', (code) => r(code)));
    c.sendBinary(Buffer.alloc(64 * MiB + 1));
    expect(await closed).toBe(1009);
  });
});

describe('takeover and closing', () => {
  it('supersedes the stream of a pair opened on another connection; what it made durable stays', async () => {
    const a = await daemon.client();
    const oa = await a.open('p14', DISK);
    const base = oa.durableSeq;
    a.sendRecords([1, 2, 3].map((k) => ({ stream: oa.stream, seq: base + k, offset: k * 4096, time: 1, data: block(k) })));
    await ackOf(a, oa.stream, base + 3);
    const superseded = errorOn(a, oa.stream);
    const b = await daemon.client();
    const ob = await b.open('p14', DISK);
    expect(await superseded).toMatchObject({ code: 'superseded', stream: oa.stream });
    expect(ob.durableSeq).toBe(base + 3);
    // The old connection stays usable for other pairs.
    expect(a.closed).toBe(false);
    b.sendRecords([{ stream: ob.stream, seq: base + 4, offset: 0, time: 2, data: block(4) }]);
    expect(await b.closeStream(ob.stream)).toBe(base + 4);
    await a.close();
    await b.close();
  });

  it('answers close with the durable seq after making everything durable', async () => {
    const c = await daemon.client();
    const o = await c.open('p13', DISK);
    c.sendRecords(Array.from({ length: 20 }, (_, i) => ({ stream: o.stream, seq: o.durableSeq + i + 1, offset: i * 8192, time: 1, data: block(i, 8192) })));
    expect(await c.closeStream(o.stream)).toBe(o.durableSeq + 20);
    await c.close();
  });
});

describe('checksum requests', () => {
  it('answers several sent at once in order, each with what the stream sent before it', async () => {
    const c = await daemon.client();
    const o = await c.open('p16', DISK);
    const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
    const blk = 64 * 1024;
    const answers: Array<Promise<{ sha256: string[] }>> = [];
    for (let i = 1; i <= 4; i++) {
      c.sendRecords([{ stream: o.stream, seq: o.durableSeq + i, offset: 0, time: i, data: Buffer.alloc(blk, i) }]);
      // No wait: the next write follows the request at once.
      answers.push(c.checksums(o.stream, i, 0, 2 * blk, blk));
    }
    const bad = c.checksums(o.stream, 9, 0, blk, 3);
    bad.catch(() => undefined); // awaited below
    const got = await Promise.all(answers);
    expect(got.map((a) => a.sha256)).toEqual([1, 2, 3, 4].map((i) => [sha(Buffer.alloc(blk, i)), sha(Buffer.alloc(blk))]));
    await expect(bad).rejects.toMatchObject({ code: 'bad-request' });
    expect(await c.closeStream(o.stream)).toBe(o.durableSeq + 4);
    await c.close();
  });
});

describe('a target that goes away', () => {
  it('says target-unavailable on the stream, keeps journaling and acking, and applies when it is back', async () => {
    const c = await daemon.client();
    const o = await c.open('p12', DISK);
    const base = o.durableSeq;
    c.sendRecords([{ stream: o.stream, seq: base + 1, offset: 0, time: 1, data: block(1) }]);
    await ackOf(c, o.stream, base + 1);
    const target = join(root, 'datastore', 'p12.img');
    renameSync(target, `${target}.away`);
    const told = c.next((m) => m.type === 'error' && m.stream === o.stream && m.code === 'target-unavailable', 10_000);
    // Keep writing until the agent notices: the applier finds the target gone on its next step.
    let seq = base + 1;
    const pump = setInterval(() => {
      seq++;
      c.sendRecords([{ stream: o.stream, seq, offset: (seq % 64) * 4096, time: seq, data: block(seq) }]);
    }, 50);
    try {
      expect(await told).toMatchObject({ code: 'target-unavailable', stream: o.stream });
    } finally {
      clearInterval(pump);
    }
    await ackOf(c, o.stream, seq);
    expect(c.closed).toBe(false);
    renameSync(`${target}.away`, target);
    expect(await c.closeStream(o.stream)).toBe(seq);
    await c.close();
  });
});

describe('recovery through the CLI while the daemon runs', () => {
  it('rebuilds what a stream wrote, byte for byte', async () => {
    const c = await daemon.client();
    const o = await c.open('p1', DISK);
    const base = o.durableSeq;
    c.sendRecords([{ stream: o.stream, seq: base + 1, offset: 8 * 4096, time: 9_000_000, data: block(77) }]);
    await ackOf(c, o.stream, base + 1);
    await c.close();
    const out = join(root, 'p1.img');
    const r = await cli(['recover', 'p1', '--at', 'latest', '--out', out, '--config', daemon.configPath, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const img = readFileSync(out);
    expect(img.subarray(8 * 4096, 9 * 4096).equals(block(77))).toBe(true);
    expect(JSON.parse(r.stdout)).toMatchObject({ pair: 'p1', seq: base + 1, sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
  });
});

describe('hello timeout', () => {
  it('closes a connection that sends no hello within 10 s (4408)', async () => {
    const { code, ms } = await helloTimeout;
    expect(code).toBe(4408);
    expect(ms).toBeGreaterThanOrEqual(9_500);
  }, 20_000);
});
