// What an operator meets at the command line: one line saying what is wrong
// and what to do, the exit code the manual gives, and nothing changed that
// the command was not asked to change.
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { packageRoot, packageVersion } from '../../src/package-root';
import { MAIN, RunningDaemon, cli, freePort, makeInstallation } from '../helpers/daemon';

const MiB = 1024 * 1024;
const roots: string[] = [];
afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

function root(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  roots.push(dir);
  return dir;
}

function occupy(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(port, '127.0.0.1', () => resolve(s));
  });
}

describe('the command line', () => {
  it('says in one line, exit 2, when the replication port is taken by another process', async () => {
    const configPath = await makeInstallation(root('mtagent-port-'), [{ id: 'p', sizeBytes: MiB }]);
    const port = Number(/port: (\d+)/.exec(readFileSync(configPath, 'utf8'))?.[1]);
    const taken = await occupy(port);
    try {
      const r = await cli(['run', '--config', configPath]);
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split('\n')).toEqual([`mtagent: cannot listen on 127.0.0.1:${port} (EADDRINUSE): change listen in ${configPath} or stop what uses it`]);
      // Said before anything was made: no catalog, no log, no retention layout, no lock, no target images.
      const dir = join(configPath, '..');
      for (const made of ['data/catalog.db', 'data/log', 'retention/ingest', 'retention/pairs', 'retention/mtagent.lock', 'datastore/p.img']) expect(existsSync(join(dir, made)), made).toBe(false);
    } finally {
      taken.close();
    }
  }, 30_000);

  it('refuses a second daemon on a retention volume in use the same way, whatever its configuration, and leaves nothing behind', async () => {
    const dir = root('mtagent-second-');
    const configPath = await makeInstallation(dir, [{ id: 'p', sizeBytes: MiB }]);
    const daemon = new RunningDaemon(configPath);
    await daemon.start();
    try {
      const other = join(dir, 'other.yaml');
      const port = await freePort();
      writeFileSync(other, readFileSync(configPath, 'utf8').replace(/port: \d+/, `port: ${port}`).replace('dataDir: data', 'dataDir: data2').replace('retention: { path: retention,', `retention: { path: ${join(dir, 'retention')},`));
      for (const config of [configPath, other]) {
        const r = await cli(['run', '--config', config]);
        expect(r.code, config).toBe(1);
        expect(r.stderr.trim().split('\n'), config).toEqual([expect.stringMatching(/^mtagent: retention volume .* is in use by agent mt-01 \(pid \d+.*; stop that agent or give this one another retention path$/)]);
      }
      expect(existsSync(join(dir, 'data2'))).toBe(false);
    } finally {
      await daemon.stop();
    }
  }, 60_000);

  it('makes no output folder for a group recovery it refuses', async () => {
    const dir = root('mtagent-grp-');
    const configPath = await makeInstallation(dir, [{ id: 'a', sizeBytes: MiB, group: 'g' }, { id: 'b', sizeBytes: MiB, group: 'g' }]);
    const out = join(dir, 'out');
    const r = await cli(['recover', '--group', 'g', '--at', 'latest', '--out', out, '--config', configPath]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(existsSync(out)).toBe(false);
  }, 30_000);

  it.skipIf(process.getuid?.() !== 0)('names a passphrase file the agent cannot read as a configuration error, exit 2, with the user it runs as', async () => {
    const dir = root('mtagent-pass-');
    chmodSync(dir, 0o755);
    const configPath = await makeInstallation(dir, [{ id: 'p', sizeBytes: MiB }]);
    chmodSync(configPath, 0o644);
    for (const f of ['tls', 'tls/agent.crt', 'tls/agent.key']) chmodSync(join(dir, f), f === 'tls' ? 0o755 : 0o644);
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const p = spawn('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, MAIN, 'run', '--config', configPath], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      p.on('exit', (code) => resolve({ code, stderr }));
    });
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toEqual([`mtagent: config ${configPath}: passphraseFile ${join(dir, 'passphrase')} cannot be read (EACCES): it must be readable by the user the agent runs as (nobody); chown it to that user, mode 0600`]);
  }, 30_000);

  it('never makes a retention folder for a read-only command: a missing one is named, with what to do', async () => {
    const dir = root('mtagent-noret-');
    const configPath = await makeInstallation(dir, [{ id: 'p', sizeBytes: MiB }]);
    const missing = join(dir, 'mnt', 'retention');
    writeFileSync(configPath, readFileSync(configPath, 'utf8').replace('retention: { path: retention,', `retention: { path: ${missing},`));
    for (const args of [['status'], ['points', 'p'], ['run']]) {
      const r = await cli([...args, '--config', configPath]);
      expect(r.code, args[0]).toBe(2);
      expect(r.stderr.trim().split('\n'), args[0]).toHaveLength(1);
      expect(r.stderr, args[0]).toMatch(new RegExp(`${missing}.*(does not exist|mount)`));
      expect(existsSync(missing), args[0]).toBe(false);
      expect(existsSync(join(dir, 'mnt')), args[0]).toBe(false);
    }
  }, 60_000);

  it('start says it listens only once it does: a second start on the same installation says only why it cannot', async () => {
    const dir = root('mtagent-start-');
    await makeInstallation(dir, [{ id: 'p', sizeBytes: MiB }]);
    const first = spawn(process.execPath, [MAIN, 'start', '--dir', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
    let said = '';
    first.stderr.on('data', (d: Buffer) => (said += d.toString()));
    try {
      await vi.waitFor(() => expect(said).toMatch(/listening on wss:\/\/127\.0\.0\.1:\d+\/v1\/replicate/), { timeout: 20_000, interval: 50 });
      expect(said).toMatch(/stream into it: {2}npx mtagent simulate --config .*agent\.yaml/);
      const second = await cli(['start', '--dir', dir]);
      expect(second.code).toBe(1);
      expect(second.stderr).not.toMatch(/listening/);
      expect(second.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^mtagent: retention volume .* is in use by agent/)]);
    } finally {
      first.kill('SIGTERM');
      await new Promise((r) => first.once('exit', r));
    }
  }, 60_000);

  it("speaks in one voice: commander's own errors are one line beginning mtagent:, exit 2", async () => {
    for (const args of [['statu'], ['status', '--bogus'], ['recover', 'p'], ['pair', 'purge']]) {
      const r = await cli(args);
      expect(r.code, args.join(' ')).toBe(2);
      const lines = r.stderr.trim().split('\n');
      expect(lines, args.join(' ')).toHaveLength(1);
      expect(lines[0], args.join(' ')).toMatch(/^mtagent: .* \(see mtagent .*--help\)$/);
    }
  });

  it('names a pair `pair` in verify --json, as every other command does', async () => {
    const configPath = await makeInstallation(root('mtagent-verify-'), [{ id: 'p', sizeBytes: MiB }]);
    const r = await cli(['verify', 'p', '--config', configPath, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ pair: 'p', ok: true });
    expect(JSON.parse(r.stdout)).not.toHaveProperty('pairId');
  }, 30_000);

  /**
   * The command on a terminal (util-linux `script` gives it a pseudo-terminal),
   * and Ctrl-C typed there once its progress bar shows: what it printed, and its exit code.
   */
  function interruptOnTerminal(args: string[]): Promise<{ code: number | null; output: string }> {
    const command = [process.execPath, MAIN, ...args].map((a) => `'${a}'`).join(' ');
    const term = spawn('script', ['-qefc', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    let typed = false;
    term.stdout.on('data', (d: Buffer) => {
      output += d.toString();
      if (!typed && /\d+% \d+\/\d+ MiB/.test(output)) {
        typed = true;
        term.stdin.write('\x03');
      }
    });
    return new Promise((resolve) => term.once('exit', (code) => resolve({ code, output })));
  }

  it('Ctrl-C during recover cancels the work where it runs, removes the partial image, restores the terminal and exits 130', async () => {
    const dir = root('mtagent-ctrlc-');
    const configPath = await makeInstallation(dir, [{ id: 'big', sizeBytes: 512 * MiB }]);
    // A disk in use: a copy of it takes long enough to be interrupted.
    writeFileSync(join(dir, 'datastore', 'big.img'), randomBytes(512 * MiB));
    const daemon = new RunningDaemon(configPath);
    await daemon.start();
    try {
      const out = join(dir, 'out.img');
      const viaDaemon = await interruptOnTerminal(['recover', 'big', '--at', 'latest', '--out', out, '--config', configPath]);
      expect(viaDaemon.code).toBe(130);
      expect(viaDaemon.output).toContain('\x1b[?25h'); // the cursor shown again
      expect(viaDaemon.output).toMatch(/mtagent: recover cancelled; nothing was left behind\r?\n/);
      expect(existsSync(out)).toBe(false);
      await vi.waitFor(() => expect(daemon.output).toContain('"control request cancelled by the command"'), { timeout: 5000 });
    } finally {
      await daemon.stop();
    }
    // No daemon: the command does the work itself, and cancels it itself.
    const offline = await interruptOnTerminal(['recover', 'big', '--at', 'latest', '--out', join(dir, 'offline.img'), '--config', configPath]);
    expect(offline.code).toBe(130);
    expect(offline.output).toMatch(/mtagent: recover cancelled; nothing was left behind/);
    expect(existsSync(join(dir, 'offline.img'))).toBe(false);
  }, 90_000);

  it('runs as the manual writes it in a clone: npx mtagent, and init says how to run the installation it made', async () => {
    const npx = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const p = spawn('npx', ['mtagent', '--version'], { cwd: packageRoot, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      p.stdout.on('data', (d: Buffer) => (out += d.toString()));
      p.on('exit', (code) => resolve({ code, out }));
    });
    expect(npx).toEqual({ code: 0, out: `${packageVersion}\n` });
    const init = await cli(['init', '--dir', join(root('mtagent-init-'), 'home'), '--no-metrics', '--port', '19999']);
    expect(init.stdout).toMatch(/run it: +npx mtagent run --config .*agent\.yaml/);
    // A host without npx is told the command that works there.
    const bare = join(root('mtagent-bare-'), 'bin');
    mkdirSync(bare);
    symlinkSync(process.execPath, join(bare, 'node'));
    symlinkSync(execFileSync('sh', ['-c', 'command -v openssl'], { encoding: 'utf8' }).trim(), join(bare, 'openssl'));
    const noNpx = await cli(['init', '--dir', join(root('mtagent-init-'), 'home'), '--no-metrics', '--port', '19999'], { PATH: bare });
    expect(noNpx.stdout).toContain(`run it:        ${process.execPath} ${MAIN} run --config `);
    const help = await cli(['--help']);
    expect(help.stdout).toMatch(/--config FILE/);
    expect(help.stdout).toMatch(/POINT is latest, latest-app/);
    expect(help.stdout).toMatch(/Exit codes: 0 success, 1 the operation failed, 2 bad usage or configuration,\s+130 interrupted/);
  }, 60_000);
});
