// The release installed for real: install.sh as root on / inside a private
// mount namespace (overlays over /etc, /opt, /var, /mnt and /usr/local, so the
// host is untouched), then the unit's ExecStart run as its User= with
// setpriv, answering status and taking a stream (test/helpers/real-install.sh).
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot, packageVersion } from '../../src/package-root';
import { freePort } from '../helpers/daemon';
import { useFileTempDirs } from '../helpers/temp-dir';

const temp = useFileTempDirs();

/** Root, unshare and overlayfs: what a real installation needs to be tried without touching the host. */
function canInstallForReal(): boolean {
  if (process.getuid?.() !== 0) return false;
  const probe = spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', 'd=$(mktemp -d) && mkdir $d/u $d/w $d/m && mount -t overlay overlay -o lowerdir=/etc,upperdir=$d/u,workdir=$d/w $d/m'], { stdio: 'ignore' });
  return probe.status === 0;
}

describe.skipIf(!canInstallForReal())('installed for real', () => {
  it('starts as installed, as its own user, answers status and takes a stream', async () => {
    const out = temp('mtagent-real-pkg-');
    execFileSync(process.execPath, [join(packageRoot, 'dist', 'scripts', 'package.js'), '--out', out], { stdio: 'pipe' });
    const tarball = join(out, `mtagent-${packageVersion}-linux-${process.arch}.tar.gz`);
    const work = temp('mtagent-real-');
    const port = await freePort();
    const r = spawnSync('unshare', ['-m', '--propagation', 'private', 'bash', join(packageRoot, 'test', 'helpers', 'real-install.sh'), work, tarball, String(port)], { encoding: 'utf8', timeout: 240_000 });
    const said = `${r.stdout}${r.stderr}`;
    expect(r.status, said).toBe(0);
    const first = readFileSync(join(work, 'install-1.log'), 'utf8');
    const second = readFileSync(join(work, 'install-2.log'), 'utf8');
    expect(first).toMatch(/\[change\]\s+create system user mtagent/);
    expect(first).toMatch(/\[change\]\s+install the application in \/opt\/mtagent \(\d+ files\)/);
    expect(first).not.toMatch(/would change/);
    expect(first).toMatch(/\[change\]\s+give the files in \/etc\/mtagent to mtagent/);
    if (!said.includes('--no-systemctl')) expect(first).toMatch(/\[warn\]\s+systemd is not running here: the unit is installed but not enabled/);
    expect(second).toMatch(/\[ok\]\s+application in \/opt\/mtagent \(\d+ files, as in this release\)/);
    expect(second).toMatch(/done: 0 changes/);

    expect(said).toContain('daemon-started: yes');
    expect(said).toMatch(/^daemon-user: mtagent$/m);
    const before = JSON.parse(readFileSync(join(work, 'status-before.json'), 'utf8')) as { daemon: boolean; pairs: Array<{ pair: string }> };
    expect(before.daemon).toBe(true);
    expect(before.pairs.map((p) => p.pair)).toEqual(['real1']);
    const after = JSON.parse(readFileSync(join(work, 'status-after.json'), 'utf8')) as { daemon: boolean; pairs: Array<{ pair: string; state: string; durableSeq: number }> };
    expect(after.pairs[0]).toMatchObject({ pair: 'real1', state: 'protected' });
    expect(after.pairs[0]?.durableSeq).toBeGreaterThan(0);
    expect(said).toMatch(/^verify: 1 passed, 0 failed$/m);
    // What the service reads and writes is its own, each as narrow as it was made.
    const files = new Map([...said.matchAll(/^file: (\S+) (\d+) (\S+)$/gm)].map((m) => [m[3], `${m[1]} ${m[2]}`]));
    expect(files.get('/etc/mtagent/agent.yaml')).toBe('mtagent:mtagent 640');
    expect(files.get('/etc/mtagent/passphrase')).toBe('mtagent:mtagent 600');
    expect(files.get('/etc/mtagent/tls/agent.key')).toBe('mtagent:mtagent 600');
    expect(files.get('/var/lib/mtagent/catalog.db')).toBe('mtagent:mtagent 600');
    expect(files.get('/var/lib/mtagent/control.sock')).toMatch(/^mtagent:mtagent 600$/);
    expect(said).toMatch(/^daemon-exit: 0$/m);
  }, 300_000);
});
