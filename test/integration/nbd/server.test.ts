// The NBD server against real clients (libnbd's nbdinfo and nbdcopy,
// qemu-io), and against hostile ones speaking the protocol by hand.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { createSecureContext } from 'node:tls';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { initInstallation } from '../../../src/config/init';
import { NbdServer } from '../../../src/nbd/server';
import { Cmd, IHAVEOPT, Opt, REQUEST_MAGIC } from '../../../src/nbd/protocol';
import { MemoryExport } from '../../helpers/memory-export';
import { useTempDir } from '../../helpers/temp-dir';

const run = promisify(execFile);
const tempDir = useTempDir();
const MiB = 1024 * 1024;
const servers: NbdServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

async function unixServer(...exports: MemoryExport[]): Promise<{ server: NbdServer; socket: string; uri: (name: string) => string }> {
  const socket = join(tempDir(), 'nbd.sock');
  const errors: unknown[] = [];
  const server = new NbdServer({ address: { kind: 'unix', path: socket }, tls: null, onError: (err) => errors.push(err) });
  for (const e of exports) server.add(e);
  await server.listen();
  servers.push(server);
  return { server, socket, uri: (name) => `nbd+unix:///${name}?socket=${socket}` };
}

/** A raw client: the handshake by hand up to the options. */
async function rawClient(socket: string): Promise<{ s: Socket; read: (n: number) => Promise<Buffer>; closed: Promise<void> }> {
  const s = connect(socket);
  let buf = Buffer.alloc(0);
  let want: { n: number; resolve: (b: Buffer) => void } | null = null;
  const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
  s.on('error', () => undefined);
  s.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    if (want && buf.length >= want.n) {
      const w = want;
      want = null;
      const out = buf.subarray(0, w.n);
      buf = buf.subarray(w.n);
      w.resolve(out);
    }
  });
  const read = (n: number): Promise<Buffer> =>
    new Promise((resolve) => {
      if (buf.length >= n) {
        const out = buf.subarray(0, n);
        buf = buf.subarray(n);
        resolve(out);
      } else want = { n, resolve };
    });
  await read(18); // greeting
  const flags = Buffer.alloc(4);
  flags.writeUInt32BE(3, 0); // fixed newstyle, no zeroes
  s.write(flags);
  return { s, read, closed };
}

function option(opt: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(16 + data.length);
  b.writeBigUInt64BE(IHAVEOPT, 0);
  b.writeUInt32BE(opt, 8);
  b.writeUInt32BE(data.length, 12);
  data.copy(b, 16);
  return b;
}

function exportName(name: string): Buffer {
  return option(Opt.EXPORT_NAME, Buffer.from(name));
}

function request(type: number, offset: bigint, length: number, handle = 1n, flags = 0): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt32BE(REQUEST_MAGIC, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  b.writeBigUInt64BE(handle, 8);
  b.writeBigUInt64BE(offset, 16);
  b.writeUInt32BE(length, 24);
  return b;
}

describe('NBD server', () => {
  it('tells nbdinfo the size, the block sizes and the exports', async () => {
    const { uri, socket } = await unixServer(new MemoryExport('p1', 8 * MiB, 512), new MemoryExport('p2', MiB, 4096, true));
    const info = JSON.parse((await run('nbdinfo', ['--json', uri('p1')])).stdout) as { exports: Array<Record<string, unknown>> };
    expect(info.exports[0]).toMatchObject({ 'export-name': 'p1', 'export-size': 8 * MiB, 'block_size_minimum': 512, 'block_size_preferred': 4096, 'block_size_maximum': 32 * MiB, 'is_read_only': false, can_flush: true, can_fua: true, can_trim: true, can_zero: true });
    const ro = JSON.parse((await run('nbdinfo', ['--json', uri('p2')])).stdout) as { exports: Array<Record<string, unknown>> };
    expect(ro.exports[0]).toMatchObject({ 'export-size': MiB, 'block_size_minimum': 4096, 'is_read_only': true });
    const list = (await run('nbdinfo', ['--list', '--json', `nbd+unix://?socket=${socket}`])).stdout;
    expect((JSON.parse(list) as { exports: Array<{ 'export-name': string }> }).exports.map((e) => e['export-name']).sort()).toEqual(['p1', 'p2']);
    // NBD_REP_ERR_UNKNOWN, which libnbd tells as ENOENT.
    await expect(run('nbdinfo', [uri('nope')])).rejects.toMatchObject({ stderr: expect.stringContaining('No such file or directory for export: nope') });
  });

  it('serves nbdcopy the exact bytes, and qemu-io writes, flushes, zeroes and reads them back', async () => {
    const exp = new MemoryExport('p', 16 * MiB);
    randomBytes(16 * MiB).copy(exp.data);
    const { uri, server } = await unixServer(exp);
    const dir = tempDir();
    await run('nbdcopy', [uri('p'), join(dir, 'copy.img')]);
    expect(readFileSync(join(dir, 'copy.img')).equals(exp.data)).toBe(true);
    const io = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 1M 64k', '-c', 'write -z 2M 1M', '-c', 'flush', '-c', 'read -P 0x5a 1M 64k', '-c', 'read -P 0 2M 1M', uri('p')]);
    expect(io.stdout).not.toMatch(/Pattern verification failed|error/i);
    expect(exp.data.subarray(MiB, MiB + 65536).every((b) => b === 0x5a)).toBe(true);
    expect(exp.data.subarray(2 * MiB, 3 * MiB).every((b) => b === 0)).toBe(true);
    expect(exp.flushes).toBeGreaterThan(0);
    await vi.waitFor(() => expect(server.clients('p')).toBe(0));
  });

  it('refuses writes to a read-only export with EPERM, and past a quota with ENOSPC', async () => {
    const ro = new MemoryExport('ro', MiB, 512, true);
    const full = new MemoryExport('full', MiB);
    full.quotaBytes = 64 * 1024;
    const { uri } = await unixServer(ro, full);
    const denied = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 1 0 4k', uri('ro')]).catch((e: { stdout: string; stderr: string }) => e);
    expect(`${denied.stdout}${denied.stderr}`).toMatch(/Operation not permitted|read-only|Permission denied/i);
    const nospace = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 1 0 64k', '-c', 'write -P 2 64k 4k', uri('full')]).catch((e: { stdout: string; stderr: string }) => e);
    expect(`${nospace.stdout}${nospace.stderr}`).toMatch(/No space left on device/);
    expect(full.data[0]).toBe(1);
  });

  it('answers bad requests with EINVAL and keeps serving; ends only the connection of a client that breaks the protocol', async () => {
    const exp = new MemoryExport('p', MiB);
    const { uri, socket } = await unixServer(exp);
    const c = await rawClient(socket);
    c.s.write(option(9999));
    const unsup = await c.read(20);
    expect(unsup.readUInt32BE(12)).toBe(0x80000001);
    await c.read(unsup.readUInt32BE(16)); // its message
    c.s.write(option(Opt.LIST, Buffer.from('x')));
    const invalid = await c.read(20);
    expect(invalid.readUInt32BE(12)).toBe(0x80000003);
    await c.read(invalid.readUInt32BE(16));
    c.s.write(exportName('p'));
    await c.read(10); // size and flags
    const replyTo = async (req: Buffer): Promise<number> => {
      c.s.write(req);
      return (await c.read(16)).readUInt32BE(4);
    };
    expect(await replyTo(request(Cmd.READ, BigInt(MiB), 4096))).toBe(22); // past the end
    expect(await replyTo(request(Cmd.READ, 100n, 4096))).toBe(22); // unaligned
    expect(await replyTo(request(Cmd.READ, 0n, 0xffffffff))).toBe(22); // 4 GiB
    expect(await replyTo(request(77, 0n, 4096))).toBe(22); // unknown command
    expect(await replyTo(request(Cmd.READ, 0n, 4096, 1n, 1 << 7))).toBe(22); // unknown flag
    expect(await replyTo(request(Cmd.FLUSH, 4096n, 0))).toBe(22);
    // Still a working connection.
    c.s.write(request(Cmd.READ, 0n, 4096));
    const ok = await c.read(16 + 4096);
    expect(ok.readUInt32BE(4)).toBe(0);
    // A 4 GiB write cannot be skipped: the connection ends.
    c.s.write(request(Cmd.WRITE, 0n, 0xffffffff));
    await c.closed;
    // Bad magic in the handshake: that connection ends too.
    const d = await rawClient(socket);
    d.s.write(Buffer.alloc(16, 0xee));
    await d.closed;
    // The export and other clients are unharmed.
    expect(JSON.parse((await run('nbdinfo', ['--json', uri('p')])).stdout).exports[0]['export-size']).toBe(MiB);
  });

  it('holds at most its bound of memory for a client that sends reads and never takes the replies', async () => {
    const exp = new MemoryExport('p', 32 * MiB);
    const { uri, socket } = await unixServer(exp);
    const c = await rawClient(socket);
    c.s.write(exportName('p'));
    await c.read(10);
    c.s.pause();
    const before = process.memoryUsage().rss;
    // 100 reads of 32 MiB: 3.2 GB of replies if the server held them all.
    for (let i = 0; i < 100; i++) c.s.write(request(Cmd.READ, 0n, 32 * MiB, BigInt(i)));
    await new Promise((r) => setTimeout(r, 1500));
    expect(process.memoryUsage().rss - before).toBeLessThan(160 * MiB);
    // Others are served meanwhile.
    expect(JSON.parse((await run('nbdinfo', ['--json', uri('p')])).stdout).exports[0]['export-size']).toBe(32 * MiB);
    c.s.destroy();
  });

  it('on TCP requires TLS first, and serves nbdinfo over it with the agent certificate', async () => {
    const dir = tempDir();
    const init = initInstallation({ dir: join(dir, 'agent'), port: 1, metricsPort: null, samplePairs: false });
    const context = createSecureContext({ cert: readFileSync(init.certPath), key: readFileSync(join(dir, 'agent', 'tls', 'agent.key')) });
    const server = new NbdServer({ address: { kind: 'tcp', host: '127.0.0.1', port: 0 }, tls: { context, requireClientCert: false }, onError: () => undefined });
    const exp = new MemoryExport('p', 4 * MiB);
    exp.data.fill(7);
    server.add(exp);
    await server.listen();
    servers.push(server);
    // Without TLS every option but STARTTLS is answered NBD_REP_ERR_TLS_REQD (libnbd says "not supported").
    const plain = await run('nbdinfo', [`nbd://127.0.0.1:${server.port}/p`]).catch((e: { stderr: string }) => e);
    expect(plain.stderr).toMatch(/server replied with error/);
    const raw = connect(server.port as number, '127.0.0.1');
    const got: Buffer[] = [];
    raw.on('data', (d: Buffer) => got.push(d));
    await new Promise((r) => raw.once('connect', r));
    const flags = Buffer.alloc(4);
    flags.writeUInt32BE(3, 0);
    raw.write(Buffer.concat([flags, option(Opt.LIST)]));
    await vi.waitFor(() => expect(Buffer.concat(got).length).toBeGreaterThanOrEqual(18 + 20));
    expect(Buffer.concat(got).readUInt32BE(18 + 12)).toBe(0x80000005);
    raw.destroy();
    const certs = join(dir, 'certs');
    mkdirSync(certs);
    copyFileSync(init.certPath, join(certs, 'ca-cert.pem'));
    const info = JSON.parse((await run('nbdinfo', ['--json', `nbds://127.0.0.1:${server.port}/p?tls-certificates=${certs}`])).stdout);
    expect(info.exports[0]['export-size']).toBe(4 * MiB);
    await run('nbdcopy', [`nbds://127.0.0.1:${server.port}/p?tls-certificates=${certs}`, join(dir, 'copy.img')]);
    expect(readFileSync(join(dir, 'copy.img')).equals(exp.data)).toBe(true);
  });
});
