// `mtagent init --dir DIR`: a working installation in one folder.
import { execFileSync } from 'node:child_process';
import { X509Certificate, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { fsyncDir, fsyncFile, mkdirDurable, writeFileDurable } from '../durable-files';
import { MtagentError } from '../errors';

export interface InitOptions {
  dir: string;
  force?: boolean;
  agentId?: string;
  port?: number;
  /** null disables /metrics. */
  metricsPort?: number | null;
  /** Sample pairs on sparse image files in datastore/. */
  samplePairs?: boolean;
  /** Absolute paths for a system installation; default: folders inside DIR. */
  dataDir?: string;
  retentionPath?: string;
  /** Listen address; default 127.0.0.1. */
  host?: string;
}

export interface InitResult {
  dir: string;
  configPath: string;
  certPath: string;
  fingerprint: string;
  port: number;
}

/** SHA-256 of a certificate's DER bytes, as 64 lowercase hex digits. */
export function certificateFingerprint(pem: string | Buffer): string {
  return new X509Certificate(pem).fingerprint256.replace(/:/g, '').toLowerCase();
}

function makeCertificate(dir: string, agentId: string): void {
  const tls = join(dir, 'tls');
  mkdirDurable(tls, 0o700);
  try {
    execFileSync(
      'openssl',
      [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '3650',
        '-subj', `/CN=${agentId}`, '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1',
        '-keyout', join(tls, 'agent.key'), '-out', join(tls, 'agent.crt'),
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
  } catch (err) {
    const why = (err as { code?: string }).code === 'ENOENT' ? 'openssl is not installed (apt-get install openssl)' : String((err as { stderr?: Buffer }).stderr ?? err);
    throw new MtagentError('init-failed', `cannot make the TLS certificate: ${why}`);
  }
  chmodSync(join(tls, 'agent.key'), 0o600);
  fsyncFile(join(tls, 'agent.key'));
  fsyncFile(join(tls, 'agent.crt'));
  fsyncDir(tls);
}

export function initInstallation(options: InitOptions): InitResult {
  const dir = resolve(options.dir);
  const configPath = join(dir, 'agent.yaml');
  if (existsSync(configPath) && !options.force) {
    throw new MtagentError('init-exists', `${configPath} already exists; give --force to make a new installation over it`);
  }
  const agentId = options.agentId ?? 'mt-01';
  const port = options.port ?? 9443;
  const dataDir = options.dataDir ?? 'data';
  const retention = options.retentionPath ?? 'retention';
  // Folders inside DIR are made here; absolute ones (a system install) are the installer's to make.
  // Every file is flushed with the directory that names it, the config last:
  // after a power cut, a config that is there names a whole installation.
  mkdirDurable(dir);
  for (const d of [retention, 'datastore', dataDir]) if (!isAbsolute(d)) mkdirDurable(resolve(dir, d), 0o750);
  makeCertificate(dir, agentId);
  const passphrase = join(dir, 'passphrase');
  writeFileDurable(passphrase, `${randomBytes(32).toString('hex')}\n`, 0o600);
  const metrics = options.metricsPort === null ? 'null' : `{ listen: 127.0.0.1:${options.metricsPort ?? 9464} }`;
  const pairs = options.samplePairs === false
    ? 'pairs: []'
    : `pairs:
  - id: vm1-disk0
    target: datastore/vm1-disk0.img   # a regular file: created sparse with sizeBytes if absent
    sizeBytes: 268435456
    group: vm1
  - id: vm1-disk1
    target: datastore/vm1-disk1.img
    sizeBytes: 268435456
    group: vm1
  - id: vm2-disk0
    target: datastore/vm2-disk0.img
    sizeBytes: 268435456`;
  writeFileDurable(
    configPath,
    `# mtagent configuration. Relative paths are relative to this file.
agentId: ${agentId}
dataDir: ${dataDir}                        # metadata database, state
listen: { host: ${options.host ?? '127.0.0.1'}, port: ${port} }
tls: { cert: tls/agent.crt, key: tls/agent.key, clientCa: null }
passphraseFile: passphrase           # mode 0600
retention: { path: ${retention}, maxBytes: null }
policy: { rpoThresholdSeconds: 900, retentionSeconds: 86400, appConsistentFrequencySeconds: 3600 }
configServer: null
metrics: ${metrics}
${pairs}
`,
    0o640,
  );
  const certPath = join(dir, 'tls', 'agent.crt');
  return { dir, configPath, certPath, fingerprint: certificateFingerprint(readFileSync(certPath)), port };
}
