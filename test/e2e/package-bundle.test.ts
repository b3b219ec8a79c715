// The release package (built with tar, run from where it is extracted) and
// the support bundle (never a secret).
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { extract, list } from 'tar';
import { describe, expect, it } from 'vitest';
import { useFileTempDirs } from '../helpers/temp-dir';
import { readPassphrase } from '../../src/config/load';
import { packageRoot, packageVersion } from '../../src/package-root';
import { RunningDaemon, cli, makeInstallation } from '../helpers/daemon';

const temp = useFileTempDirs();

describe('release package', () => {
  it('extracts to a folder from which mtagent --version and init run', async () => {
    const out = temp('mtagent-pkg-');
    execFileSync(process.execPath, [join(packageRoot, 'dist', 'scripts', 'package.js'), '--out', out], { stdio: 'pipe' });
    const name = `mtagent-${packageVersion}-linux-${process.arch}`;
    const file = join(out, `${name}.tar.gz`);
    const entries: string[] = [];
    await list({ file, onReadEntry: (e) => void entries.push(e.path) });
    expect(entries).toContain(`${name}/build/Release/mtagent_native.node`);
    expect(entries).toContain(`${name}/scripts/install.sh`);
    expect(entries).toContain(`${name}/scripts/mtagent.service`);
    expect(entries.some((e) => e.startsWith(`${name}/node_modules/better-sqlite3/`))).toBe(true);
    expect(entries.some((e) => e.includes('/node_modules/vitest/'))).toBe(false);
    const where = temp('mtagent-unpacked-');
    await extract({ file, cwd: where });
    const main = join(where, name, 'dist', 'src', 'cli', 'main.js');
    expect(execFileSync(process.execPath, [main, '--version'], { encoding: 'utf8' }).trim()).toBe(packageVersion);
    const init = execFileSync(process.execPath, [main, 'init', '--dir', join(where, 'etc'), '--json'], { encoding: 'utf8' });
    expect(JSON.parse(init)).toMatchObject({ fingerprint: expect.stringMatching(/^[0-9a-f]{64}$/) });
    // The unpacked agent is a working one: its addon loads and its engine opens.
    const st = execFileSync(process.execPath, [main, 'status', '--config', join(where, 'etc', 'agent.yaml'), '--json'], { encoding: 'utf8' });
    expect(JSON.parse(st)).toMatchObject({ daemon: false, pairs: expect.any(Array) });
  }, 120_000);
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
