import type { Command } from 'commander';
import { initInstallation } from '../config/init';
import { UsageError, howToRun, printJson } from './common';

export function registerInit(program: Command): void {
  program
    .command('init')
    .description('make a working installation in DIR: agent.yaml, a self-signed certificate, a passphrase file, retention/, datastore/, data/')
    .requiredOption('--dir <dir>', 'folder for the installation')
    .option('--force', 'make a new installation over an existing one')
    .option('--agent-id <id>', 'agent id', 'mt-01')
    .option('--port <port>', 'replication port (on 127.0.0.1)', '9443')
    .option('--metrics-port <port>', 'metrics port (on 127.0.0.1)', '9464')
    .option('--no-metrics', 'no /metrics endpoint')
    .option('--no-sample-pairs', 'no sample pairs in the configuration')
    .option('--data-dir <path>', 'dataDir (default: data/ in DIR)')
    .option('--retention <path>', 'retention path (default: retention/ in DIR)')
    .option('--listen-host <host>', 'listen address', '127.0.0.1')
    .option('--json', 'machine-readable output')
    .action((opts: { dir: string; force?: boolean; agentId: string; port: string; metricsPort: string; metrics: boolean; samplePairs: boolean; dataDir?: string; retention?: string; listenHost: string; json?: boolean }) => {
      const port = Number(opts.port);
      const metricsPort = Number(opts.metricsPort);
      if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError(`--port must be 1..65535, not ${opts.port}`);
      const r = initInstallation({
        dir: opts.dir,
        force: opts.force ?? false,
        agentId: opts.agentId,
        port,
        metricsPort: opts.metrics ? metricsPort : null,
        samplePairs: opts.samplePairs,
        dataDir: opts.dataDir,
        retentionPath: opts.retention,
        host: opts.listenHost,
      });
      if (opts.json) {
        printJson(r);
        return;
      }
      process.stdout.write(`installation ready in ${r.dir}
  config:      ${r.configPath}
  certificate: ${r.certPath}
  SHA-256 fingerprint: ${r.fingerprint}
run it:        ${howToRun()} run --config ${r.configPath}
`);
    });
}
