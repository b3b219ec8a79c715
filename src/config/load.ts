// Reading agent.yaml: YAML (JSON is YAML too), validated, relative paths
// resolved against the file's folder.
import { userInfo } from 'node:os';
import { readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { MtagentError } from '../errors';
import { configSchema, describeIssue, firstIssue, type ParsedConfig } from './schema';

export const DEFAULT_CONFIG_PATH = '/etc/mtagent/agent.yaml';

/** A configuration problem: the agent stops with exit code 2 and this one line. */
export class ConfigError extends MtagentError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('config-invalid', message, options);
    this.name = 'ConfigError';
  }
}

export interface AgentConfig extends ParsedConfig {
  /** Absolute path of the file this came from. */
  configPath: string;
}

function abs(base: string, p: string): string {
  return isAbsolute(p) ? p : resolve(base, p);
}

export function parseConfig(text: string, configPath: string): AgentConfig {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`config ${configPath}: not valid YAML: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
  }
  const r = configSchema.safeParse(raw ?? {});
  if (!r.success) {
    const issue = firstIssue(r.error.issues);
    throw new ConfigError(`config ${configPath}: ${issue ? describeIssue(issue) : 'invalid'}`);
  }
  const c = r.data;
  const base = dirname(configPath);
  return {
    ...c,
    configPath,
    dataDir: abs(base, c.dataDir),
    tls: { cert: abs(base, c.tls.cert), key: abs(base, c.tls.key), clientCa: c.tls.clientCa === null ? null : abs(base, c.tls.clientCa) },
    passphraseFile: abs(base, c.passphraseFile),
    retention: { ...c.retention, path: abs(base, c.retention.path) },
    configServer: c.configServer === null ? null : { ...c.configServer, caFile: c.configServer.caFile === null ? null : abs(base, c.configServer.caFile) },
    pairs: c.pairs.map((p) => ({ ...p, target: abs(base, p.target) })),
  };
}

export function loadConfig(path: string = DEFAULT_CONFIG_PATH): AgentConfig {
  const configPath = resolve(path);
  let text: string;
  try {
    text = readFileSync(configPath, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const hint = code === 'ENOENT' ? `; create one with 'mtagent init --dir DIR' or give --config` : '';
    throw new ConfigError(`config ${configPath}: cannot read it (${code ?? String(err)})${hint}`, { cause: err });
  }
  return parseConfig(text, configPath);
}

/** The shared secret: a 0600 file, trailing newline stripped. A group- or world-readable file is refused. */
export function readPassphrase(config: AgentConfig): Buffer {
  const path = config.passphraseFile;
  let mode: number;
  try {
    mode = statSync(path).mode & 0o777;
  } catch (err) {
    throw new ConfigError(`config ${config.configPath}: passphraseFile ${path} cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  if ((mode & 0o077) !== 0) {
    throw new ConfigError(`config ${config.configPath}: passphraseFile ${path} is readable by group or others (mode ${mode.toString(8).padStart(4, '0')}); run chmod 600 ${path}`);
  }
  let text: string;
  try {
    text = readFileSync(path, 'utf8').replace(/\r?\n$/, '');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    const hint = code === 'EACCES' ? `: it must be readable by the user the agent runs as (${userName()}); chown it to that user, mode 0600` : '';
    throw new ConfigError(`config ${config.configPath}: passphraseFile ${path} cannot be read (${code})${hint}`);
  }
  if (text.length === 0) throw new ConfigError(`config ${config.configPath}: passphraseFile ${path} is empty`);
  return Buffer.from(text, 'utf8');
}

function userName(): string {
  try {
    return userInfo().username;
  } catch {
    return `uid ${process.getuid?.() ?? '?'}`;
  }
}

export function readTlsFile(config: AgentConfig, key: 'cert' | 'key' | 'clientCa' | 'configServer.caFile', path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(`config ${config.configPath}: ${key.includes('.') ? key : `tls.${key}`} ${path} cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
}
