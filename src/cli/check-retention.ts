import type { Command } from 'commander';
import { DEFAULT_CONFIG_PATH, loadConfig, type AgentConfig } from '../config/load';
import { packageRoot } from '../package-root';
import { checkRetentionVolume } from '../retention/volume-rules';
import { printJson } from './common';

export function registerCheckRetention(program: Command): void {
  program
    .command('check-retention')
    .argument('<path>', 'the retention path to check')
    .description('the retention-volume rules, one line per rule; exit 1 if any fails')
    .option('--config <file>', 'configuration file (for the targets, dataDir and agent id; optional)')
    .option('--json', 'machine-readable output')
    .action(async (path: string, o: { config?: string; json?: boolean }) => {
      let config: AgentConfig | null = null;
      try {
        config = loadConfig(o.config ?? process.env.MTAGENT_CONFIG ?? DEFAULT_CONFIG_PATH);
      } catch (err) {
        if (o.config) throw err; // a config named on the command line must load
      }
      const results = await checkRetentionVolume({
        retentionPath: path,
        targets: config?.pairs.map((p) => p.target) ?? [],
        installDir: packageRoot,
        dataDir: config?.dataDir ?? '/var/lib/mtagent',
        agentId: config?.agentId ?? '',
        configPath: config?.configPath ?? null,
      });
      if (o.json) printJson(results);
      else for (const r of results) process.stdout.write(`${r.ok ? 'pass' : 'FAIL'}  ${r.rule.padEnd(18)} ${r.detail}\n`);
      if (results.some((r) => !r.ok)) process.exitCode = 1;
    });
}
