// `mtagent support-bundle --out FILE.tar.gz`: what support needs to see, and
// never a secret: no passphrase file, no private key, the config with any
// inline secret masked.
import { execFileSync } from 'node:child_process';
import { chmodSync, closeSync, copyFileSync, openSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create } from 'tar';
import type { AgentConfig } from '../config/load';
import { logDir } from '../log';
import { packageRoot, packageVersion } from '../package-root';
import { checkRetentionVolume, volumeContextFor } from '../retention/volume-rules';

export interface BundleInputs {
  config: AgentConfig;
  /** `status --json`, from the daemon or offline; null when it could not be had. */
  status: unknown;
  statusError: string | null;
}

function tryRun(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
  } catch (err) {
    return `(${cmd} ${args.join(' ')} failed: ${err instanceof Error ? err.message.split('\n')[0] : String(err)})\n`;
  }
}

/** The config text with the value of any key that could hold a secret inline masked (paths are kept). */
export function redactConfig(text: string): string {
  return text.replace(/^(\s*-?\s*(?:passphrase|secret|password|token|key)\s*:\s*)(?!null\b)([^\s#][^#\n]*)/gim, (_m, key: string, value: string) =>
    /^["']?(\/|\.{0,2}\/?[\w.-]+\/)/.test(value) ? `${key}${value}` : `${key}[redacted]`,
  );
}

/** Whether journalctl gave log lines (not a failure, nor "-- No entries --"). */
function journalHasLines(text: string): boolean {
  return text.split('\n').some((line) => line.trim().length > 0 && !line.startsWith('(journalctl ') && !line.startsWith('-- No entries'));
}

/** The daemon's own log files, oldest first, at most MAX_OWN_LOG_BYTES of the newest; null when there are none. */
function ownLog(dataDir: string): string | null {
  const dir = logDir(dataDir);
  if (!existsSync(dir)) return null;
  const numbered = readdirSync(dir)
    .map((name) => ({ name, n: Number(/^mtagent\.(\d+)\.log$/.exec(name)?.[1] ?? NaN) }))
    .filter((f) => !Number.isNaN(f.n))
    .sort((a, b) => a.n - b.n);
  if (numbered.length === 0) return null;
  const text = numbered.map((f) => readFileSync(join(dir, f.name), 'utf8')).join('');
  return text.length > MAX_OWN_LOG_BYTES ? text.slice(text.length - MAX_OWN_LOG_BYTES) : text;
}

const MAX_OWN_LOG_BYTES = 32 * 1024 * 1024;

export async function writeSupportBundle(inputs: BundleInputs, outFile: string): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), 'mtagent-bundle-'));
  try {
    const c = inputs.config;
    const files: string[] = [];
    const put = (name: string, content: string): void => {
      writeFileSync(join(dir, name), content);
      files.push(name);
    };
    put('agent.yaml', redactConfig(readFileSync(c.configPath, 'utf8')));
    put('status.json', `${JSON.stringify(inputs.status ?? { error: inputs.statusError }, null, 2)}\n`);
    put(
      'versions.txt',
      `${[
        `mtagent ${packageVersion} (${packageRoot})`,
        `node ${process.version} ${process.platform} ${process.arch}`,
        tryRun('uname', ['-a']).trim(),
        existsSync('/etc/os-release') ? readFileSync('/etc/os-release', 'utf8').trim() : '(no /etc/os-release)',
      ].join('\n')}\n`,
    );
    const rules = await checkRetentionVolume(volumeContextFor(c, packageRoot)).catch((err: unknown) => [{ rule: 'error', ok: false, detail: String(err) }]);
    put('retention-rules.txt', `${rules.map((r) => `${r.ok ? 'pass' : 'FAIL'} ${r.rule}: ${r.detail}`).join('\n')}\n`);
    const journal = tryRun('journalctl', ['-u', 'mtagent', '--no-pager', '-n', '5000', '-o', 'cat']);
    put('journal.log', journal);
    // Run outside systemd (npm start, a shell), the daemon's log is in its own files instead.
    const own = ownLog(c.dataDir);
    if (own !== null && !journalHasLines(journal)) put('mtagent.log', own);
    put('tls.txt', existsSync(c.tls.cert) ? tryRun('openssl', ['x509', '-in', c.tls.cert, '-noout', '-subject', '-issuer', '-dates', '-fingerprint', '-sha256']) : '(no certificate)\n');
    const catalog = join(c.dataDir, 'catalog.db');
    if (existsSync(catalog)) {
      copyFileSync(catalog, join(dir, 'catalog.db'));
      files.push('catalog.db');
      if (existsSync(`${catalog}-wal`)) {
        copyFileSync(`${catalog}-wal`, join(dir, 'catalog.db-wal'));
        files.push('catalog.db-wal');
      }
    }
    // The catalog and the logs are the customer's: the bundle is for its owner alone.
    closeSync(openSync(outFile, 'w', 0o600));
    chmodSync(outFile, 0o600);
    create({ gzip: true, file: outFile, cwd: dir, prefix: 'mtagent-support', portable: true, sync: true }, files);
    chmodSync(outFile, 0o600);
    return files;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
