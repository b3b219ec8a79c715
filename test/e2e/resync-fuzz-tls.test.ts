// Delta resync, the receiver under fuzzing, and mutual TLS, against the real daemon.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { useFileTempDirs } from '../helpers/temp-dir';
import { crc32c } from '../../src/native';
import { encodeRecords, type WriteRecordInput } from '../../src/protocol/records';
import { ReplicationClient } from '../../src/simulator/client';
import { Simulator } from '../../src/simulator/simulator';
import { RunningDaemon, cli, makeInstallation } from '../helpers/daemon';

const MiB = 1024 * 1024;
const tempRoot = useFileTempDirs();

async function latestSha(daemon: RunningDaemon, pair: string, root: string): Promise<{ sha256: string; seq: number; path: string }> {
  const out = join(root, `${pair}-latest.img`);
  const r = await cli(['recover', pair, '--at', 'latest', '--out', out, '--force', '--config', daemon.configPath, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return { ...(JSON.parse(r.stdout) as { sha256: string; seq: number }), path: out };
}

describe('delta resync', () => {
  it('answers a new pair with an initial copy, finished even when the duration ends first', async () => {
    const root = tempRoot('mtagent-copy-');
    const disk = 32 * MiB;
    const daemon = new RunningDaemon(await makeInstallation(root, [{ id: 'c', sizeBytes: disk }]));
    await daemon.start();
    const sim = new Simulator({
      client: daemon.clientOptions(),
      pairs: [{ id: 'c', diskBytes: disk }],
      workload: 'random',
      ioBytes: 64 * 1024,
      rateBytesPerSecond: MiB,
      durationSeconds: 0.05,
      items: null,
      tagEvery: 0,
      group: null,
      tickSeconds: 60,
      seed: 6,
      messageBytes: 512 * 1024,
      reconnect: false,
      resyncWhenAsked: true,
    });
    await sim.run();
    const model = sim.model('c');
    // resync-start, the disk in 1 MiB writes, resync-end: the whole disk, whatever the duration.
    expect(model.lastSeq).toBeGreaterThanOrEqual(disk / MiB + 2);
    const status = await cli(['status', '--config', daemon.configPath, '--json']);
    expect(JSON.parse(status.stdout).pairs).toEqual([expect.objectContaining({ pair: 'c', state: 'protected' })]);
    expect((await latestSha(daemon, 'c', root)).sha256).toBe(model.sha256At(model.lastSeq));
    expect(await daemon.stop()).toBe(0);
  }, 120_000);

  it('sends only the blocks that differ, and leaves the target equal to the source', async () => {
    const root = tempRoot('mtagent-resync-');
    const disk = 8 * MiB;
    const daemon = new RunningDaemon(await makeInstallation(root, [{ id: 'r', sizeBytes: disk }]));
    await daemon.start();
    const sim = new Simulator({
      client: daemon.clientOptions(),
      pairs: [{ id: 'r', diskBytes: disk }],
      workload: 'random',
      ioBytes: 64 * 1024,
      rateBytesPerSecond: null,
      durationSeconds: null,
      items: 300,
      tagEvery: 0,
      group: null,
      tickSeconds: 60,
      seed: 5,
      messageBytes: 512 * 1024,
      reconnect: false,
    });
    await sim.run();
    const model = sim.model('r');
    expect((await latestSha(daemon, 'r', root)).sha256).toBe(model.sha256At(model.lastSeq));

    // The target drifts from the source in k blocks while the agent is down.
    expect(await daemon.stop()).toBe(0);
    const k = 5;
    const fd = openSync(join(root, 'datastore', 'r.img'), 'r+');
    for (let i = 0; i < k; i++) writeSync(fd, randomBytes(4096), 0, 4096, (i * 19 + 3) * 64 * 1024 + 8192);
    closeSync(fd);
    await daemon.start();

    sim.requestResync('r');
    await sim.run();
    const [report] = sim.resyncReports;
    expect(report).toMatchObject({ pair: 'r', blocks: disk / (64 * 1024), differing: k, bytesSent: k * 64 * 1024 });
    expect(report?.bytesSent).toBeLessThan(disk / 20);
    const after = await latestSha(daemon, 'r', root);
    expect(after.seq).toBe(model.lastSeq);
    expect(after.sha256).toBe(model.sha256At(model.lastSeq));
    // The resync window is not a recovery point; its end is.
    const points = await cli(['points', 'r', '--config', daemon.configPath, '--json']);
    expect(JSON.parse(points.stdout).resyncWindows).toHaveLength(1);
    expect(await daemon.stop()).toBe(0);
  }, 120_000);
});

describe('the receiver under fuzzing', () => {
  it('never crashes and never journals a record whose crc does not match', async () => {
    const root = tempRoot('mtagent-fuzz-');
    const disk = 1 * MiB;
    const daemon = new RunningDaemon(await makeInstallation(root, [{ id: 'f', sizeBytes: disk }]));
    await daemon.start();
    // Every payload is one sector, unique, so the image can be checked sector by sector.
    const validPayloads = new Set<string>();
    const sector = (seq: number, salt: number): Buffer => {
      const b = createHash('sha512').update(`${seq}/${salt}`).digest();
      return Buffer.concat(Array.from({ length: 8 }, () => b));
    };
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat({ max: 7 }) }),
      fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
      fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }),
      fc.record({ kind: fc.constant('garbage' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 2048 }) }),
      fc.record({ kind: fc.constant('text' as const), text: fc.string({ maxLength: 200 }) }),
      fc.constant({ kind: 'none' as const }),
    );
    let salt = 0;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 6 }), fc.array(mutation, { minLength: 1, maxLength: 3 }), async (count, mutations) => {
        const c = new ReplicationClient(daemon.clientOptions());
        await c.connect();
        const o = await c.open('f', disk);
        const records: WriteRecordInput[] = [];
        for (let i = 1; i <= count; i++) {
          const data = sector(o.durableSeq + i, ++salt);
          records.push({ stream: o.stream, seq: o.durableSeq + i, offset: ((salt * 7) % (disk / 512)) * 512, time: salt, data });
          validPayloads.add(createHash('sha256').update(data).digest('hex'));
        }
        let msg: Buffer = encodeRecords(records);
        for (const m of mutations) {
          if (m.kind === 'flip') msg[m.at % msg.length] = (msg[m.at % msg.length] as number) ^ (1 << m.bit);
          else if (m.kind === 'truncate') msg = msg.subarray(0, m.at % msg.length);
          else if (m.kind === 'insert') msg = Buffer.concat([msg.subarray(0, m.at % msg.length), Buffer.from(m.bytes), msg.subarray(m.at % msg.length)]);
          else if (m.kind === 'garbage') msg = Buffer.from(m.bytes);
          else if (m.kind === 'text') c.sendText(m.text);
        }
        if (msg.length > 0) c.sendBinary(msg);
        // Whatever the agent answers (ack, error, close), it answers; then the next round.
        await Promise.race([c.next(() => false, 300).catch(() => undefined), new Promise((r) => c.once('close', r))]);
        await c.close();
        expect(daemon.alive).toBe(true);
      }),
      { numRuns: 60, seed: 20261126 },
    );
    // Still serving, and every sector of the image is zeros or a payload sent with a matching crc.
    const c = await new ReplicationClient(daemon.clientOptions());
    await c.connect();
    const o = await c.open('f', disk);
    const data = sector(999_999, 1);
    validPayloads.add(createHash('sha256').update(data).digest('hex'));
    c.sendRecords([{ stream: o.stream, seq: o.durableSeq + 1, offset: 0, time: Date.now() * 1000, data }]);
    expect(await c.closeStream(o.stream)).toBe(o.durableSeq + 1);
    await c.close();
    const img = readFileSync((await latestSha(daemon, 'f', root)).path);
    const zero = Buffer.alloc(512);
    for (let s = 0; s < img.length; s += 512) {
      const part = img.subarray(s, s + 512);
      if (part.equals(zero)) continue;
      expect(validPayloads.has(createHash('sha256').update(part).digest('hex')), `sector at ${s} holds bytes that were never sent with a valid crc`).toBe(true);
    }
    expect(crc32c(img.subarray(0, 512))).toBe(crc32c(data));
    expect(await daemon.stop()).toBe(0);
  }, 180_000);
});

describe('mutual TLS', () => {
  it('requires a client certificate signed by tls.clientCa', async () => {
    const root = tempRoot('mtagent-mtls-');
    const ssl = (args: string[]): void => void execFileSync('openssl', args, { cwd: root, stdio: 'ignore' });
    ssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=ps-ca', '-keyout', 'ca.key', '-out', 'ca.crt']);
    ssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=ps-01', '-keyout', 'ps.key', '-out', 'ps.csr']);
    ssl(['x509', '-req', '-in', 'ps.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-out', 'ps.crt']);
    ssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=stranger', '-keyout', 'other.key', '-out', 'other.crt']);
    const configPath = await makeInstallation(root, [{ id: 'm', sizeBytes: MiB }]);
    writeFileSync(configPath, readFileSync(configPath, 'utf8').replace('clientCa: null', `clientCa: ${join(root, 'ca.crt')}`));
    const daemon = new RunningDaemon(configPath);
    await daemon.start();
    await expect(daemon.client()).rejects.toThrow();
    await expect(daemon.client({ cert: readFileSync(join(root, 'other.crt')), key: readFileSync(join(root, 'other.key')) })).rejects.toThrow();
    const ok = await daemon.client({ cert: readFileSync(join(root, 'ps.crt')), key: readFileSync(join(root, 'ps.key')) });
    expect((await ok.open('m', MiB)).type).toBe('opened');
    await ok.close();
    // Both checks apply: a good certificate with a wrong passphrase is still refused.
    await expect(daemon.client({ cert: readFileSync(join(root, 'ps.crt')), key: readFileSync(join(root, 'ps.key')), passphrase: Buffer.from('x') })).rejects.toMatchObject({ code: 'auth-failed' });
    expect(await daemon.stop()).toBe(0);
  }, 60_000);

  it('lets a client pin the agent certificate by fingerprint, and refuses a wrong pin', async () => {
    const root = tempRoot('mtagent-pin-');
    const daemon = new RunningDaemon(await makeInstallation(root, [{ id: 'm', sizeBytes: MiB }]));
    await daemon.start();
    const { X509Certificate } = await import('node:crypto');
    const fp = new X509Certificate(readFileSync(daemon.config.tls.cert)).fingerprint256;
    const pinned = new ReplicationClient({ ...daemon.clientOptions(), ca: undefined, fingerprint: fp });
    await pinned.connect();
    await pinned.close();
    const wrong = new ReplicationClient({ ...daemon.clientOptions(), ca: undefined, fingerprint: 'ab'.repeat(32) });
    await expect(wrong.connect()).rejects.toMatchObject({ code: 'fingerprint-mismatch' });
    expect(await daemon.stop()).toBe(0);
  }, 60_000);
});
