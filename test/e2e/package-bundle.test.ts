// The release package (built with tar, run from where it is extracted) and
// the support bundle (never a secret).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { extract, list } from 'tar';
import { describe, expect, it } from 'vitest';
import { useFileTempDirs } from '../helpers/temp-dir';
import { readPassphrase } from '../../src/config/load';
import { packageRoot, packageVersion } from '../../src/package-root';
import { RunningDaemon, cli, makeInstallation } from '../helpers/daemon';

const temp = useFileTempDirs();

/** A PATH holding every command of this machine but node: the master target a release is installed on. */
function pathWithoutNode(dir: string): string {
  mkdirSync(dir, { recursive: true });
  for (const bin of ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']) {
    if (!existsSync(bin)) continue;
    for (const name of readdirSync(bin)) {
      if (/^(node|nodejs|npm|npx|corepack)$/.test(name) || existsSync(join(dir, name))) continue;
      symlinkSync(join(bin, name), join(dir, name));
    }
  }
  return dir;
}

describe('release package', () => {
  it('unpacks to a tree that runs and installs with no Node.js on the machine', async () => {
    const out = temp('mtagent-pkg-');
    execFileSync(process.execPath, [join(packageRoot, 'dist', 'scripts', 'package.js'), '--out', out], { stdio: 'pipe' });
    const name = `mtagent-${packageVersion}-linux-${process.arch}`;
    const file = join(out, `${name}.tar.gz`);
    const entries: string[] = [];
    await list({ file, onReadEntry: (e) => void entries.push(e.path) });
    for (const f of ['bin/mtagent', 'runtime/node', 'build/Release/mtagent_native.node', 'scripts/install.sh', 'scripts/mtagent.service', 'dist/scripts/sync-app.js']) {
      expect(entries).toContain(`${name}/${f}`);
    }
    expect(entries.some((e) => e.startsWith(`${name}/node_modules/better-sqlite3/`))).toBe(true);
    expect(entries.some((e) => e.includes('/node_modules/vitest/'))).toBe(false);
    const where = temp('mtagent-unpacked-');
    await extract({ file, cwd: where });
    const tree = join(where, name);
    for (const f of ['bin/mtagent', 'runtime/node', 'scripts/install.sh']) expect(statSync(join(tree, f)).mode & 0o111, f).toBe(0o111);

    const env = { ...process.env, PATH: pathWithoutNode(join(where, 'path')) };
    expect(() => execFileSync('sh', ['-c', 'command -v node'], { env, stdio: 'pipe' })).toThrow();
    const mtagent = (...args: string[]): string => execFileSync(join(tree, 'bin', 'mtagent'), args, { encoding: 'utf8', env });
    expect(mtagent('--version').trim()).toBe(packageVersion);
    expect(JSON.parse(mtagent('init', '--dir', join(where, 'etc'), '--json'))).toMatchObject({ fingerprint: expect.stringMatching(/^[0-9a-f]{64}$/) });
    // The unpacked agent is a working one: its addon loads and its engine opens.
    expect(JSON.parse(mtagent('status', '--config', join(where, 'etc', 'agent.yaml'), '--json'))).toMatchObject({ daemon: false, pairs: expect.any(Array) });

    // install.sh from the release: the runtime goes with the application, the unit runs it, a second run changes nothing.
    const root = join(where, 'root');
    const install = (): string => execFileSync('bash', [join(tree, 'scripts', 'install.sh'), '--root', root], { encoding: 'utf8', env });
    expect(install()).toMatch(/\[change\]\s+install the application/);
    expect(install()).toMatch(/done: 0 changes/);
    const unit = readFileSync(join(root, 'etc', 'systemd', 'system', 'mtagent.service'), 'utf8');
    expect(unit).toContain('ExecStart=/opt/mtagent/runtime/node ');
    const installed = join(root, 'opt', 'mtagent', 'bin', 'mtagent');
    expect(execFileSync(installed, ['--version'], { encoding: 'utf8', env }).trim()).toBe(packageVersion);
    // The command an operator types is that one (the link is absolute, for the machine the tree becomes).
    expect(readlinkSync(join(root, 'usr', 'local', 'bin', 'mtagent'))).toBe('/opt/mtagent/bin/mtagent');
    symlinkSync(installed, join(where, 'path', 'mtagent'));
    expect(execFileSync('mtagent', ['--version'], { encoding: 'utf8', env }).trim()).toBe(packageVersion);
  }, 180_000);
});

describe('support bundle', () => {
  it('holds config, status, versions and the catalog, and no secret', async () => {
    const root = temp('mtagent-support-');
    const daemon = new RunningDaemon(await makeInstallation(root, [{ id: 's1', sizeBytes: 1024 * 1024 }]));
    await daemon.start();
    try {
      const out = join(root, 'bundle.tar.gz');
      const r = await cli(['support-bundle', '--out', out, '--config', daemon.configPath]);
      expect(r.code, r.stderr).toBe(0);
      // It holds the catalog: for its owner alone, and so is the catalog itself.
      expect(statSync(out).mode & 0o777).toBe(0o600);
      expect(statSync(join(daemon.config.dataDir, 'catalog.db')).mode & 0o777).toBe(0o600);
      const where = temp('mtagent-support-x-');
      await extract({ file: out, cwd: where });
      const files = readdirSync(join(where, 'mtagent-support')).sort();
      expect(files).toEqual(expect.arrayContaining(['agent.yaml', 'status.json', 'versions.txt', 'retention-rules.txt', 'catalog.db', 'tls.txt']));
      expect(JSON.parse(readFileSync(join(where, 'mtagent-support', 'status.json'), 'utf8'))).toMatchObject({ agentId: 'mt-01', daemon: true });
      // Run outside systemd, the daemon kept its log in its own files, and the bundle holds them.
      expect(files).toContain('mtagent.log');
      expect(readFileSync(join(where, 'mtagent-support', 'mtagent.log'), 'utf8')).toContain('"msg":"mtagent running"');
      const secrets = [readPassphrase(daemon.config).toString(), readFileSync(daemon.config.tls.key, 'utf8').split('\n').find((l) => l.length > 40) as string, 'PRIVATE KEY'];
      for (const f of files) {
        const content = readFileSync(join(where, 'mtagent-support', f)).toString('latin1');
        for (const s of secrets) expect(content.includes(s), `${f} holds a secret`).toBe(false);
      }
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
  }, 60_000);
});
