// A drill on a real filesystem: the source's writes are those of mke2fs and
// of files written into it; the test failover at a point between two file
// writes is mounted through nbdfuse and a loop device, is clean to e2fsck,
// holds the files of that moment only, and takes writes that change neither
// the target nor what `recover` gives for that point.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ReplicationClient } from '../../src/simulator/client';
import type { TestInfo } from '../../src/testfailover/manager';
import { RunningDaemon, cli, makeInstallation } from '../helpers/daemon';
import { canMakeLoopDevices } from '../helpers/loop-volume';

const MiB = 1024 * 1024;
const DISK = 32 * MiB;
const BLOCK = 4096;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Sends, as the source's writes, every 4 KiB block of `now` that differs from `before`; then a tag. */
async function streamChanges(c: ReplicationClient, stream: number, seq: { n: number }, before: Buffer, now: Buffer, tag: string): Promise<void> {
  const records = [];
  for (let at = 0; at < DISK; at += BLOCK) {
    if (now.subarray(at, at + BLOCK).equals(before.subarray(at, at + BLOCK))) continue;
    records.push({ stream, seq: ++seq.n, offset: at, time: Date.now() * 1000, data: Buffer.from(now.subarray(at, at + BLOCK)) });
  }
  for (let i = 0; i < records.length; i += 64) c.sendRecords(records.slice(i, i + 64));
  c.sendJson({ type: 'tag', stream, seq: ++seq.n, time: Date.now() * 1000, kind: 'app', name: tag });
  const want = seq.n;
  await c.next((m) => m.type === 'ack' && m.stream === stream && m.durableSeq >= want);
}

const sh = (cmd: string, args: string[]): string => {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}${r.stdout}`);
  return r.stdout;
};

describe.runIf(canMakeLoopDevices() && existsSync('/dev/fuse'))('test failover of an ext4 disk', () => {
  it('mounts the point between two file writes, clean, with the files of that moment only', async () => {
    const root = mkdtempSync(join(tmpdir(), 'mtagent-drill-ext4-'));
    const fuseDir = join(root, 'fuse');
    const mnt = join(root, 'mnt');
    let nbdfuse: ReturnType<typeof spawn> | null = null;
    let loop: string | null = null;
    let mounted = false;
    const daemon = new RunningDaemon(await makeInstallation(root, [{ id: 'fs', sizeBytes: DISK }]));
    try {
      const src = join(root, 'source.img');
      writeFileSync(src, Buffer.alloc(0));
      sh('truncate', ['-s', String(DISK), src]);
      sh('mke2fs', ['-q', '-F', '-t', 'ext4', '-b', String(BLOCK), src]);
      const made = readFileSync(src);
      writeFileSync(join(root, 'a.txt'), 'written before the point\n'.repeat(1000));
      sh('debugfs', ['-w', '-R', `write ${join(root, 'a.txt')} a.txt`, src]);
      const withA = readFileSync(src);
      writeFileSync(join(root, 'b.txt'), 'written after the point\n'.repeat(1000));
      sh('debugfs', ['-w', '-R', `write ${join(root, 'b.txt')} b.txt`, src]);
      const withB = readFileSync(src);

      await daemon.start();
      const c = await daemon.client();
      const { stream } = await c.open('fs', DISK, 512);
      const seq = { n: 0 };
      await streamChanges(c, stream, seq, Buffer.alloc(DISK), made, 'made');
      await streamChanges(c, stream, seq, made, withA, 'a');
      await streamChanges(c, stream, seq, withA, withB, 'b');
      const configPath = daemon.configPath;

      const started = await cli(['test-failover', 'start', 'fs', '--at', 'tag:a', '--json', '--config', configPath]);
      expect(started.code, started.stderr).toBe(0);
      const t = JSON.parse(started.stdout) as TestInfo;

      mkdirSync(fuseDir);
      nbdfuse = spawn('nbdfuse', [join(fuseDir, 'disk'), t.uri], { stdio: 'ignore' });
      for (let i = 0; i < 100 && !existsSync(join(fuseDir, 'disk')); i++) await new Promise((r) => setTimeout(r, 50));
      const disk = join(fuseDir, 'disk');
      expect(sha(readFileSync(disk))).toBe(sha(withA));
      // e2fsck exits 0 when the filesystem is clean, and -n changes nothing.
      const fsck = spawnSync('e2fsck', ['-fn', disk], { encoding: 'utf8' });
      expect(fsck.status, fsck.stdout + fsck.stderr).toBe(0);

      loop = sh('losetup', ['--find', '--show', disk]).trim();
      mkdirSync(mnt);
      sh('mount', ['-t', 'ext4', loop, mnt]);
      mounted = true;
      expect(readFileSync(join(mnt, 'a.txt'), 'utf8')).toBe('written before the point\n'.repeat(1000));
      expect(existsSync(join(mnt, 'b.txt'))).toBe(false);
      writeFileSync(join(mnt, 'drill.txt'), 'the drill wrote this\n'.repeat(5000));
      sh('umount', [mnt]);
      mounted = false;
      sh('losetup', ['-d', loop]);
      loop = null;
      // The drill's writes are the test's: the export has them, the filesystem still clean.
      const after = spawnSync('e2fsck', ['-fn', disk], { encoding: 'utf8' });
      expect(after.status, after.stdout + after.stderr).toBe(0);
      expect(sh('debugfs', ['-R', 'ls -l /', disk])).toMatch(/drill\.txt/);
      sh('fusermount3', ['-u', fuseDir]);
      nbdfuse = null;

      // Neither the target nor the point changed.
      expect(sha(readFileSync(join(root, 'datastore', 'fs.img')))).toBe(sha(withB));
      const rec = await cli(['recover', 'fs', '--at', 'tag:a', '--out', join(root, 'a.img'), '--json', '--config', configPath]);
      expect(rec.code, rec.stderr).toBe(0);
      expect((JSON.parse(rec.stdout) as { sha256: string }).sha256).toBe(sha(withA));

      const stopped = await cli(['test-failover', 'stop', 'fs', '--config', configPath]);
      expect(stopped.code, stopped.stderr).toBe(0);
      await c.close();
      expect(await daemon.stop()).toBe(0);
    } finally {
      if (mounted) spawnSync('umount', ['-l', mnt]);
      if (loop) spawnSync('losetup', ['-d', loop]);
      if (nbdfuse) spawnSync('fusermount3', ['-u', fuseDir]);
      await daemon.stop();
      rmSync(root, { recursive: true, force: true });
    }
  }, 120_000);
});


