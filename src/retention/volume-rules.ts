// The retention-volume rules (README, The retention volume), for `mtagent check-retention` and
// for `mtagent run`, which refuses a path that fails one.
import { accessSync, constants, existsSync, readdirSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { statfs } from '../native';
import { LOCK_FILE, RetentionLock, describeHolder } from './lock';

export interface RuleResult {
  rule: string;
  ok: boolean;
  detail: string;
}

export interface VolumeContext {
  retentionPath: string;
  /** Every configured pair's target path. */
  targets: readonly string[];
  installDir: string;
  dataDir: string;
  agentId: string;
  configPath: string | null;
}

/** The only entries an agent puts on its retention volume (and ext4's own). */
export const AGENT_ENTRIES = new Set([LOCK_FILE, 'ingest', 'pairs', 'tests', 'lost+found']);
const FAT_TYPES = new Set(['vfat', 'exfat', 'msdos']);
const VOLATILE_TYPES = new Set(['tmpfs', 'ramfs']);

/** The real path of `p`, or of its nearest existing parent joined with the rest. */
function realish(p: string): string {
  let cur = resolve(p);
  const rest: string[] = [];
  while (!existsSync(cur)) {
    rest.unshift(cur.slice(dirname(cur).length + 1));
    const parent = dirname(cur);
    if (parent === cur) break;
    cur = parent;
  }
  return join(realpathSync(cur), ...rest);
}

function inside(child: string, parent: string): boolean {
  const rel = relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !rel.startsWith(sep) && rel !== '..');
}

export async function checkRetentionVolume(ctx: VolumeContext): Promise<RuleResult[]> {
  const results: RuleResult[] = [];
  const add = (rule: string, ok: boolean, detail: string): void => void results.push({ rule, ok, detail });
  const path = resolve(ctx.retentionPath);
  let isDir = false;
  try {
    isDir = statSync(path).isDirectory();
  } catch {
    isDir = false;
  }
  add('directory', isDir, isDir ? `${path} is a directory` : `${path} does not exist or is not a directory: create it on the retention disk and mount it there`);
  if (!isDir) return results;
  const real = realpathSync(path);

  const fs = await statfs(real);
  add(
    'filesystem',
    !FAT_TYPES.has(fs.type),
    FAT_TYPES.has(fs.type) ? `${fs.type} cannot hold the agent's retention (no sparse files, no O_DIRECT guarantees): use ext4 or xfs` : `filesystem ${fs.type}`,
  );
  add(
    'persistent',
    !VOLATILE_TYPES.has(fs.type),
    VOLATILE_TYPES.has(fs.type) ? `${fs.type} lives in memory: acknowledged blocks would not survive a power loss; use a disk-backed filesystem` : 'disk-backed',
  );
  add('capacity', fs.capacityBytes > 0, `${fs.capacityBytes} bytes, ${fs.availableBytes} available`);

  let writable = !fs.readOnly;
  let why = fs.readOnly ? 'mounted read-only' : '';
  if (writable) {
    try {
      accessSync(real, constants.W_OK);
      const probe = join(real, `.mtagent-probe-${process.pid}`);
      writeFileSync(probe, 'probe');
      rmSync(probe);
    } catch (err) {
      writable = false;
      why = err instanceof Error ? err.message : String(err);
    }
  }
  add('writable', writable, writable ? 'writable' : `not writable: ${why}`);

  const targetsInside = ctx.targets.filter((t) => inside(realish(t), real));
  add(
    'no-targets-inside',
    targetsInside.length === 0,
    targetsInside.length === 0 ? 'no pair target lies inside it' : `pair targets inside the retention volume: ${targetsInside.join(', ')}`,
  );

  const foreign = readdirSync(real).filter((name) => !AGENT_ENTRIES.has(name) && !name.startsWith('.mtagent-probe-'));
  add(
    'dedicated',
    foreign.length === 0,
    foreign.length === 0 ? "holds only the agent's retention files" : `holds other files (${foreign.slice(0, 5).join(', ')}${foreign.length > 5 ? ', …' : ''}): a retention volume is used for nothing else`,
  );

  const install = realish(ctx.installDir);
  const data = realish(ctx.dataDir);
  const holdsInstall = inside(install, real);
  const holdsData = inside(data, real);
  add(
    'not-a-cache-volume',
    !holdsInstall && !holdsData,
    !holdsInstall && !holdsData
      ? "holds neither the agent's installation nor its dataDir"
      : `holds the agent's ${holdsInstall ? `installation (${install})` : `dataDir (${data})`}: put retention on its own volume`,
  );

  const lock = await RetentionLock.probe(real);
  const sameConfig =
    lock.holder !== null && lock.holder.agentId === ctx.agentId && (ctx.configPath === null || lock.holder.configPath === resolve(ctx.configPath));
  add(
    'not-in-use',
    !lock.held || sameConfig,
    !lock.held ? 'no other agent holds its lock' : sameConfig ? `held by this configuration's daemon (pid ${lock.holder?.pid})` : `in use by ${describeHolder(lock.holder)}`,
  );
  return results;
}

/** The rule context of a loaded configuration. */
export function volumeContextFor(config: { retention: { path: string }; pairs: ReadonlyArray<{ target: string }>; dataDir: string; agentId: string; configPath: string }, installDir: string): VolumeContext {
  return {
    retentionPath: config.retention.path,
    targets: config.pairs.map((p) => p.target),
    installDir,
    dataDir: config.dataDir,
    agentId: config.agentId,
    configPath: config.configPath,
  };
}

export function failedRules(results: readonly RuleResult[]): RuleResult[] {
  return results.filter((r) => !r.ok);
}
