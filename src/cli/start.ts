import { existsSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import type { Command } from 'commander';
import { initInstallation } from '../config/init';
import { loadConfig } from '../config/load';
import { createDaemonLogger } from '../log';
import { runDaemon } from '../app/daemon';
import { howToRun } from './common';

/** `npm start`: an embedded installation under ./mtagent-home, created on first start. */
export function registerStart(program: Command): void {
  program
    .command('start')
    .description('run the agent on an embedded installation in DIR (./mtagent-home), made on first start')
    .option('--dir <dir>', 'installation folder', 'mtagent-home')
    .action(async (o: { dir: string }) => {
      const dir = resolve(o.dir);
      const configPath = join(dir, 'agent.yaml');
      if (!existsSync(configPath)) {
        const r = initInstallation({ dir });
        process.stderr.write(`mtagent: created an installation in ${dir} (certificate SHA-256 ${r.fingerprint})\n`);
      }
      const config = loadConfig(configPath);
      const shown = relative(process.cwd(), configPath) || configPath;
      const cmd = howToRun();
      // Said once it is true: after recovery, with the endpoint listening.
      process.exitCode = await runDaemon(config, () => createDaemonLogger(config.dataDir), ({ host, port }) => {
        process.stderr.write(
          `mtagent: listening on wss://${host}:${port}/v1/replicate with pairs ${config.pairs.map((p) => p.id).join(', ')}
  stream into it:  ${cmd} simulate --config ${shown} --workload oltp --rate 16M --tag-every 50 --group vm1 --duration 60 --verify 2
  look at it:      ${cmd} status --config ${shown}
`,
        );
      });
    });
}
