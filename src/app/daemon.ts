// `mtagent run`: the agent as a long-running process.
import { createServer } from 'node:net';
import { mkdirDurable } from '../durable-files';
import { MtagentError } from '../errors';
import { RetentionLock, describeHolder } from '../retention/lock';
import { ConfigError, loadConfig, readPassphrase, readTlsFile, type AgentConfig } from '../config/load';
import { ProtocolError } from '../protocol/errors';
import { Engine } from '../engine/engine';
import { ENGINE_DEFAULTS, type EngineSizes } from '../engine/options';
import type { Logger } from '../log';
import { returnFreedMemory, sdNotify } from '../native';
import { packageRoot, packageVersion } from '../package-root';
import { checkRetentionVolume, failedRules, volumeContextFor } from '../retention/volume-rules';
import { ReplicationServer } from '../server/listener';
import { ControlServer, controlSocketPath } from '../control/socket';
import { status, type AgentContext, type StatusReport } from '../control/operations';
import { Heartbeat, heartbeatBody } from '../heartbeat/client';
import { AgentMetrics, startMetricsServer } from '../metrics/server';
import { TestFailovers } from '../testfailover/manager';

export interface Daemon {
  /** The configuration in force (replaced on SIGHUP). */
  config: AgentConfig;
  engine: Engine;
  tests: TestFailovers;
  server: ReplicationServer;
  control: ControlServer;
  startedAt: Date;
  stop(): Promise<void>;
}

/**
 * MTAGENT_TUNING (JSON) overrides engine sizes for tests and the soak, so a
 * short run still rotates and prunes segments. Not configuration: operators
 * never need it, and a value that is not an object of positive whole numbers
 * of the engine's sizes is refused, naming it.
 */
export function parseTuning(raw: string | undefined): Partial<EngineSizes> {
  if (!raw) return {};
  let t: unknown;
  try {
    t = JSON.parse(raw);
  } catch {
    throw new ConfigError('MTAGENT_TUNING is not valid JSON: unset it (it is for tests only)');
  }
  if (typeof t !== 'object' || t === null || Array.isArray(t)) throw new ConfigError('MTAGENT_TUNING must be a JSON object of engine sizes: unset it (it is for tests only)');
  const out: Partial<EngineSizes> = {};
  for (const [key, value] of Object.entries(t)) {
    if (!Object.hasOwn(ENGINE_DEFAULTS, key)) throw new ConfigError(`MTAGENT_TUNING: unknown key ${key} (known: ${Object.keys(ENGINE_DEFAULTS).join(', ')})`);
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) throw new ConfigError(`MTAGENT_TUNING: ${key} must be a positive whole number`);
    out[key as keyof EngineSizes] = value;
  }
  return out;
}

export function engineOptionsFor(config: AgentConfig, log: Logger): Parameters<typeof Engine.open>[0] {
  return {
    ...parseTuning(process.env.MTAGENT_TUNING),
    agentId: config.agentId,
    configPath: config.configPath,
    retentionDir: config.retention.path,
    dataDir: config.dataDir,
    maxBytes: config.retention.maxBytes,
    pairs: config.pairs.map((p) => ({ id: p.id, target: p.target, sizeBytes: p.sizeBytes ?? null, group: p.group ?? null })),
    policy: { retentionSeconds: config.policy.retentionSeconds, rpoThresholdSeconds: config.policy.rpoThresholdSeconds },
    logger: log,
  };
}

/** Checks the retention volume against its rules and refuses a path that fails, naming the rule. */
export async function assertRetentionVolume(config: AgentConfig): Promise<void> {
  // Another daemon on the volume, of this configuration or another: one error, an operation that failed (exit 1).
  const lock = await RetentionLock.probe(config.retention.path);
  if (lock.held) throw new MtagentError('retention-locked', `retention volume ${config.retention.path} is in use by ${describeHolder(lock.holder)}; stop that agent or give this one another retention path`);
  const results = await checkRetentionVolume(volumeContextFor(config, packageRoot));
  const failed = failedRules(results);
  if (failed.length > 0) {
    const f = failed[0] as { rule: string; detail: string };
    throw new ConfigError(`retention path ${config.retention.path} fails the rule '${f.rule}': ${f.detail} (mtagent check-retention ${config.retention.path} lists every rule)`);
  }
}

/** A port taken by another program, said before anything is made. */
async function assertCanListen(host: string, port: number, what: string, fix: string): Promise<void> {
  if (port === 0) return;
  const probe = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.listen({ host, port, exclusive: true }, () => resolve());
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    throw new ConfigError(`cannot ${what} on ${host}:${port} (${code}): ${fix}`);
  } finally {
    await new Promise<void>((resolve) => probe.close(() => resolve()));
  }
}

/**
 * What `run` checks before it makes or writes anything (the log folder, the
 * catalog, the retention layout, the targets): the files the configuration
 * names, the retention volume and its lock, and the ports.
 */
export async function preflight(config: AgentConfig): Promise<DaemonSecrets> {
  const secrets: DaemonSecrets = {
    passphrase: readPassphrase(config),
    cert: readTlsFile(config, 'cert', config.tls.cert),
    key: readTlsFile(config, 'key', config.tls.key),
    clientCa: config.tls.clientCa ? readTlsFile(config, 'clientCa', config.tls.clientCa) : null,
    configServerCa: config.configServer?.caFile ? readTlsFile(config, 'configServer.caFile', config.configServer.caFile) : null,
  };
  await assertRetentionVolume(config);
  await assertCanListen(config.listen.host, config.listen.port, 'listen', `change listen in ${config.configPath} or stop what uses it`);
  if (config.metrics) {
    const i = config.metrics.listen.lastIndexOf(':');
    await assertCanListen(config.metrics.listen.slice(0, i).replace(/^\[|\]$/g, ''), Number(config.metrics.listen.slice(i + 1)), 'serve metrics', `change metrics.listen in ${config.configPath}, or set it to null`);
  }
  return secrets;
}

export interface DaemonSecrets {
  passphrase: Buffer;
  cert: Buffer;
  key: Buffer;
  clientCa: Buffer | null;
  configServerCa: Buffer | null;
}

export async function startDaemon(config: AgentConfig, log: Logger, checked?: DaemonSecrets): Promise<Daemon> {
  const { passphrase, cert, key, clientCa, configServerCa } = checked ?? (await preflight(config));
  mkdirDurable(config.dataDir, 0o750);
  const engine = await Engine.open(engineOptionsFor(config, log));
  const tests = TestFailovers.open({ engine, dataDir: config.dataDir, tls: { cert, key, clientCa }, log });
  let metrics: AgentMetrics | null = null;
  let server: ReplicationServer;
  try {
    server = await ReplicationServer.start({
      host: config.listen.host,
      port: config.listen.port,
      cert,
      key,
      clientCa,
      agentId: config.agentId,
      passphrase,
      engine,
      log,
      onDurable: (pairId, bytes, seconds) => {
        metrics?.ackLatency.observe(seconds);
        metrics?.ingestedBytes.inc({ pair: pairId }, bytes);
      },
    });
  } catch (err) {
    await tests.close();
    await engine.close();
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
      throw new ConfigError(`cannot listen on ${config.listen.host}:${config.listen.port} (${code}): change listen in ${config.configPath} or stop what uses it`);
    }
    throw err;
  }
  const startedAt = new Date();
  let heartbeat: Heartbeat | null = null;
  const context: AgentContext = {
    engine,
    agentId: config.agentId,
    startedAt,
    processServers: () => server.processServers(),
    heartbeat: () => (heartbeat ? { ...heartbeat.state } : null),
    tests,
  };
  // Status is what the heartbeat, the metrics and `mtagent status` all report; computed at most once a second.
  let cached: { at: number; value: Promise<StatusReport> } | null = null;
  const currentStatus = (): Promise<StatusReport> => {
    if (!cached || Date.now() - cached.at > 1000) cached = { at: Date.now(), value: status(context, true) };
    return cached.value;
  };
  let control: ControlServer;
  try {
    control = await ControlServer.start(config.dataDir, context, log);
  } catch (err) {
    await tests.close();
    await server.close();
    await engine.close();
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    throw new ConfigError(
      `cannot listen on the control socket ${controlSocketPath(config.dataDir)} (${code}): another agent may run with dataDir ${config.dataDir}; stop it, or give this one a dataDir of its own`,
    );
  }
  let metricsServer: import('node:http').Server | null = null;
  if (config.metrics) {
    const sources = {
      status: currentStatus,
      applyLagBytes: () => engine.pairIds().map((pair) => ({ pair, bytes: engine.status(pair).applyLagBytes })),
      connections: () => server.connectionCount,
      arrivals: () => server.arrivals,
      retentionPolicySeconds: config.policy.retentionSeconds,
      applyTimings: () => engine.applyTimings,
    };
    metrics = new AgentMetrics(sources);
    try {
      metricsServer = await startMetricsServer(config.metrics.listen, metrics, sources, log);
    } catch (err) {
      await control.close();
      await tests.close();
      await server.close();
      await engine.close();
      throw new ConfigError(`cannot serve metrics on ${config.metrics.listen} (${(err as NodeJS.ErrnoException).code ?? String(err)}): change metrics.listen in ${config.configPath}, or set it to null`);
    }
  }
  if (config.configServer) {
    const cs = config.configServer;
    heartbeat = new Heartbeat({
      url: cs.url,
      agentId: config.agentId,
      passphrase,
      intervalSeconds: cs.heartbeatSeconds,
      ca: configServerCa,
      fingerprint: cs.fingerprint,
      body: async () => heartbeatBody(await status(context, true)),
      log,
      onFailure: () => metrics?.heartbeatFailures.inc(),
    });
    heartbeat.start();
  }
  let stopping: Promise<void> | null = null;
  return {
    config,
    engine,
    tests,
    server,
    control,
    startedAt,
    stop: () => {
      stopping ??= (async () => {
        sdNotify('STOPPING=1');
        log.info('stopping: no new connections; making everything received durable');
        heartbeat?.stop();
        await new Promise<void>((resolve) => (metricsServer ? metricsServer.close(() => resolve()) : resolve()));
        await control.close();
        // Tests are kept on the volume, and served again at the next start.
        await tests.close();
        await server.close();
        await engine.close();
        log.info('stopped');
      })();
      return stopping;
    },
  };
}

/**
 * Runs until SIGTERM or SIGINT; resolves with the exit code. `onReady` is
 * called once recovery is done and the endpoint listens.
 */
export async function runDaemon(config: AgentConfig, makeLog: () => Promise<Logger>, onReady?: (listening: { host: string; port: number }) => void): Promise<number> {
  // Payload buffers (a message, a batch, an extent) are 64 KiB or more.
  returnFreedMemory(256 * 1024);
  const checked = await preflight(config);
  // The log is made once nothing stands in the way: a refused start leaves nothing behind.
  const log = await makeLog();
  const daemon = await startDaemon(config, log, checked);
  const { host, port } = daemon.server.address();
  log.info({ version: packageVersion, agentId: config.agentId, listen: `${host}:${port}`, retention: config.retention.path, pairs: daemon.engine.pairIds() }, 'mtagent running');
  sdNotify(`READY=1\nSTATUS=listening on ${host}:${port}\nMAINPID=${process.pid}`);
  onReady?.({ host, port });
  // systemd's watchdog is fed only while the engine is healthy, never from a blind timer.
  const watchdogUs = Number(process.env.WATCHDOG_USEC ?? 0);
  let watchdog: NodeJS.Timeout | null = null;
  if (watchdogUs > 0 && (!process.env.WATCHDOG_PID || Number(process.env.WATCHDOG_PID) === process.pid)) {
    watchdog = setInterval(() => {
      if (daemon.engine.healthy()) sdNotify('WATCHDOG=1');
      else log.error('engine not healthy: the systemd watchdog is not fed');
    }, Math.max(500, watchdogUs / 2000));
    watchdog.unref();
  }
  return new Promise<number>((resolve) => {
    const onHangup = (): void => void reload(daemon, log);
    const shutdown = (exitCode: number): void => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      // A reload during the stop would run against a closing engine.
      process.off('SIGHUP', onHangup);
      if (watchdog) clearInterval(watchdog);
      daemon.stop().then(
        () => resolve(exitCode),
        (err: unknown) => {
          log.error({ err }, 'stopping failed');
          resolve(1);
        },
      );
    };
    const onSignal = (signal: NodeJS.Signals): void => {
      log.info({ signal }, 'signal received');
      shutdown(0);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    // Stopped on an error it cannot pass, the engine refuses every append: exit
    // non-zero, so the service manager restarts the agent and it reads its journal again.
    void daemon.engine.stoppedOnError.then(() => {
      log.error('exiting: the engine stopped on an error (logged above)');
      shutdown(1);
    });
    process.on('SIGHUP', onHangup);
  });
}

/**
 * SIGHUP: pairs added or removed and the policy changed, without dropping
 * other pairs' connections. A bad file is logged and the running
 * configuration kept. Other settings need a restart (said in the log).
 */
export async function reload(daemon: Daemon, log: Logger): Promise<void> {
  let next: AgentConfig;
  try {
    next = loadConfig(daemon.config.configPath);
  } catch (err) {
    log.error({ err: err instanceof Error ? err.message : String(err) }, 'SIGHUP: the configuration does not load; keeping the running one');
    return;
  }
  const old = daemon.config;
  for (const key of ['agentId', 'dataDir', 'listen', 'tls', 'passphraseFile', 'retention.path', 'configServer', 'metrics'] as const) {
    const get = (c: AgentConfig): unknown => (key === 'retention.path' ? c.retention.path : c[key]);
    if (JSON.stringify(get(old)) !== JSON.stringify(get(next))) log.warn({ key }, 'SIGHUP: this setting changed and takes effect after a restart');
  }
  const opts = engineOptionsFor(next, log);
  // A test's pair going from the configuration ends the test first: its target is let go.
  for (const id of daemon.engine.pairIds()) {
    if (!next.pairs.some((p) => p.id === id)) await daemon.tests.endFor(id, 'the pair was removed from the configuration');
  }
  let r: Awaited<ReturnType<Engine['reconfigure']>>;
  try {
    r = await daemon.engine.reconfigure(opts.pairs, opts.policy, next.retention.maxBytes);
  } catch (err) {
    log.error({ err: err instanceof Error ? err.message : String(err) }, 'SIGHUP: the configuration cannot be applied; keeping the running one');
    return;
  }
  for (const id of r.removed) daemon.server.endPair(id, (stream) => new ProtocolError('unknown-pair', `pair ${id} was removed from the configuration`, { stream }));
  daemon.config = { ...next, agentId: old.agentId, dataDir: old.dataDir, listen: old.listen, tls: old.tls, retention: { ...next.retention, path: old.retention.path } };
  log.info({ added: r.added, removed: r.removed, changed: r.changed, policy: next.policy }, 'configuration reloaded');
}
