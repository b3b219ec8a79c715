// npm run demo [-- --duration 60]: the agent and the simulator for a minute
// on a fresh installation in ./mtagent-demo, then an app-consistent point
// rebuilt through the CLI and its SHA-256 checked against the simulator.
import { spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { initInstallation } from '../src/config/init';
import { Simulator } from '../src/simulator/simulator';
import { checkPoint } from '../src/simulator/verify';
import { DAEMON_NODE_FLAGS } from '../src/server/node-flags';
import { scriptArgs } from './script-args';

const values = scriptArgs(__filename, { duration: { type: 'string', default: '60' }, dir: { type: 'string', default: 'mtagent-demo' }, port: { type: 'string', default: '19443' } });
const MiB = 1024 * 1024;

async function main(): Promise<void> {
  const dir = resolve(values.dir);
  rmSync(dir, { recursive: true, force: true });
  const init = initInstallation({ dir, port: Number(values.port), metricsPort: null, samplePairs: false });
  const pairs = [{ id: 'erp-db', sizeBytes: 256 * MiB }, { id: 'erp-logs', sizeBytes: 128 * MiB }];
  writeFileSync(init.configPath, readFileSync(init.configPath, 'utf8').replace('pairs: []', `pairs:\n${pairs.map((p) => `  - { id: ${p.id}, target: datastore/${p.id}.img, sizeBytes: ${p.sizeBytes}, group: erp }`).join('\n')}`));
  const main = join(__dirname, '..', 'src', 'cli', 'main.js');
  const agent = spawn(process.execPath, [...DAEMON_NODE_FLAGS, main, 'run', '--config', init.configPath], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((res, rej) => {
    let out = '';
    agent.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('"mtagent running"')) res();
    });
    agent.once('exit', (c) => rej(new Error(`agent exited ${c}`)));
  });
  process.stdout.write(`agent running on wss://127.0.0.1:${values.port} (installation ${dir}); streaming oltp with app tags for ${values.duration} s…\n`);
  const sim = new Simulator({
    client: { url: `wss://127.0.0.1:${values.port}`, passphrase: Buffer.from(readFileSync(join(dir, 'passphrase'), 'utf8').trim()), processServerId: 'ps-demo', ca: readFileSync(init.certPath) },
    pairs: pairs.map((p) => ({ id: p.id, diskBytes: p.sizeBytes })),
    workload: 'oltp',
    ioBytes: 16 * 1024,
    rateBytesPerSecond: 20 * MiB,
    durationSeconds: Number(values.duration),
    items: null,
    tagEvery: 200,
    group: 'erp',
    tickSeconds: 2,
    seed: 42,
    messageBytes: 256 * 1024,
    reconnect: true,
  });
  const report = await sim.run();
  process.stdout.write(`acknowledged ${report.itemsAcked} items, ${(report.bytesAcked / MiB).toFixed(0)} MiB; ack p50 ${report.ackLatencyMs.p50.toFixed(1)} ms, p99 ${report.ackLatencyMs.p99.toFixed(1)} ms\n`);
  let failed = 0;
  for (const p of pairs) {
    const model = sim.model(p.id);
    const app = model.latestApp();
    if (!app) continue;
    const check = await checkPoint([process.execPath, main], init.configPath, model, 'latest-app', app.seq);
    process.stdout.write(`${p.id}: latest-app = tag ${app.name} (seq ${app.seq}) rebuilt, SHA-256 ${check.actual} ${check.ok ? 'matches the source' : `MISMATCH: ${check.error}`}\n`);
    if (!check.ok) failed++;
  }
  agent.kill('SIGTERM');
  await new Promise((r) => agent.once('exit', r));
  process.stdout.write(failed === 0 ? 'demo passed\n' : 'demo FAILED\n');
  process.exitCode = failed === 0 ? 0 : 1;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
