// scripts/install.sh into a directory tree (--root), twice; the systemd unit;
// the daemon's READY and watchdog notifications.
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useFileTempDirs } from '../helpers/temp-dir';
import { packageRoot } from '../../src/package-root';
import { MAIN, RunningDaemon, cli, makeInstallation } from '../helpers/daemon';
import { fakeSysfs } from '../helpers/fake-sysfs';

const INSTALL = join(packageRoot, 'scripts', 'install.sh');
const temp = useFileTempDirs();

function install(root: string, ...extra: string[]): { code: number; out: string } {
  try {
    return { code: 0, out: execFileSync('bash', [INSTALL, '--root', root, ...extra], { encoding: 'utf8' }) };
  } catch (err) {
    const e = err as { status: number; stdout: string; stderr: string };
    return { code: e.status, out: `${e.stdout}${e.stderr}` };
  }
}

/** Every file and link under `dir` with its mode and content hash. */
function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = lstatSync(p);
      const rel = relative(dir, p);
      if (st.isDirectory()) {
        out.set(`${rel}/`, (st.mode & 0o7777).toString(8));
        walk(p);
      } else if (st.isSymbolicLink()) out.set(rel, `-> ${execFileSync('readlink', [p], { encoding: 'utf8' }).trim()}`);
      else out.set(rel, `${(st.mode & 0o7777).toString(8)} ${createHash('sha256').update(readFileSync(p)).digest('hex')}`);
    }
  };
  walk(dir);
  return out;
}

describe('install.sh', () => {
  it('installs into a tree, and a second run changes nothing', () => {
    const root = temp('mtagent-root-');
    const first = install(root);
    expect(first.code, first.out).toBe(0);
    expect(first.out).toMatch(/\[change\]\s+create system user mtagent/);
    expect(first.out).toMatch(/\[change\]\s+install the systemd unit/);
    const before = snapshot(root);
    const second = install(root);
    expect(second.code, second.out).toBe(0);
    expect(second.out).toMatch(/done: 0 changes/);
    expect(second.out).not.toMatch(/\[change\]/);
    expect(snapshot(root)).toEqual(before);

    // What it laid down.
    expect(readFileSync(join(root, 'etc', 'passwd'), 'utf8')).toMatch(/^mtagent:x:/m);
    expect(statSync(join(root, 'etc', 'mtagent', 'passphrase')).mode & 0o777).toBe(0o600);
    const config = readFileSync(join(root, 'etc', 'mtagent', 'agent.yaml'), 'utf8');
    expect(config).toContain('dataDir: /var/lib/mtagent');
    expect(config).toContain('path: /mnt/retention');
    expect(existsSync(join(root, 'var', 'lib', 'mtagent', 'datastore'))).toBe(true);
    expect(lstatSync(join(root, 'usr', 'local', 'bin', 'mtagent')).isSymbolicLink()).toBe(true);
    // The installed copy runs on its own.
    const version = execFileSync(process.execPath, [join(root, 'opt', 'mtagent', 'dist', 'src', 'cli', 'main.js'), '--version'], { encoding: 'utf8' }).trim();
    expect(version).toBe(JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')).version);
    expect(existsSync(join(root, 'opt', 'mtagent', 'node_modules', 'vitest'))).toBe(false);
    // The unit it installed passes systemd's own check.
    const unit = join(root, 'etc', 'systemd', 'system', 'mtagent.service');
    const text = readFileSync(unit, 'utf8');
    for (const line of ['Type=notify', 'WatchdogSec=', 'Restart=on-failure', 'User=mtagent', 'LimitNOFILE=', 'ProtectSystem=strict', 'ReadWritePaths=/var/lib/mtagent /mnt/retention', 'NoNewPrivileges=yes', 'PrivateTmp=yes']) {
      expect(text).toContain(line);
    }
    expect(text).not.toMatch(/@[A-Z_]+@/);
    execFileSync('systemd-analyze', ['verify', unit], { stdio: 'pipe' });
  }, 120_000);

  it('--dry-run prints the plan and changes nothing', () => {
    const root = temp('mtagent-dry-');
    const r = install(root, '--dry-run');
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/\[would\]\s+create folder \/opt\/mtagent/);
    expect(r.out).toMatch(/dry run: \d+ changes planned/);
    expect(r.out).toMatch(/\[would\]\s+create system user mtagent/);
    // Nothing at all, not even the user files the real run appends to.
    expect(readdirSync(root)).toEqual([]);
  }, 60_000);

  it("gives the disks the verdict of mtagent disks, which exits 1 in either form when an id is not stable", async () => {
    const unstable = temp('mtagent-sysfs-');
    fakeSysfs(unstable);
    const r = install(temp('mtagent-disks-'), '--dry-run', '--sysfs-root', unstable);
    expect(r.out).toMatch(/\[warn\]\s+disks without a stable SCSI id/);
    expect(r.out).toMatch(/\/dev\/sdb/);
    for (const form of [[], ['--json']]) expect((await cli(['disks', '--sysfs-root', unstable, ...form])).code, form.join(' ')).toBe(1);
    const stable = temp('mtagent-sysfs-');
    fakeSysfs(stable, { unstable: false });
    expect(install(temp('mtagent-disks-'), '--dry-run', '--sysfs-root', stable).out).toMatch(/\[ok\]\s+every disk has a stable SCSI id/);
    for (const form of [[], ['--json']]) expect((await cli(['disks', '--sysfs-root', stable, ...form])).code, form.join(' ')).toBe(0);
    expect(install(temp('mtagent-disks-'), '--dry-run', '--sysfs-root', temp('mtagent-nosys-')).out).toMatch(/\[warn\]\s+no SCSI disks found/);
  }, 60_000);

  it('reports what the master target lacks without failing', () => {
    const r = install(temp('mtagent-pkgs-'), '--dry-run');
    expect(r.out).toMatch(/\[(ok\]\s+packages|warn\]\s+missing packages: .*apt-get install -y)/);
    expect(r.out).toMatch(/\[ok\]\s+node v2/);
  }, 60_000);
});

describe('systemd notifications', () => {
  it('says READY once listening and feeds the watchdog while healthy', async () => {
    const root = temp('mtagent-notify-');
    const daemon = new RunningDaemon(await makeInstallation(root, [{ id: 'n', sizeBytes: 1024 * 1024 }]));
    const sock = join(root, 'notify.sock');
    const listener = spawn('python3', ['-c', `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("ready", flush=True)
while True:
    print(s.recv(4096).decode().replace("\\n", "|"), flush=True)
`, sock], { stdio: ['ignore', 'pipe', 'inherit'] });
    let heard = '';
    await new Promise<void>((resolve) => listener.stdout.on('data', (d: Buffer) => {
      heard += d.toString();
      if (heard.includes('ready')) resolve();
    }));
    try {
      await daemon.start({ NOTIFY_SOCKET: sock, WATCHDOG_USEC: '1000000' });
      const deadline = Date.now() + 5000;
      while (!(heard.includes('READY=1') && (heard.match(/WATCHDOG=1/g) ?? []).length >= 2) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(heard).toMatch(/READY=1\|STATUS=listening on 127\.0\.0\.1:\d+/);
      expect((heard.match(/WATCHDOG=1/g) ?? []).length).toBeGreaterThanOrEqual(2);
      expect(await daemon.stop()).toBe(0);
      expect(heard).toContain('STOPPING=1');
    } finally {
      listener.kill();
    }
    void MAIN;
  }, 60_000);
});
