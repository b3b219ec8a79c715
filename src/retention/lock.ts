// One agent per retention volume: an flock on `.mtagent-lock`, which the
// kernel releases when the holder dies, even by SIGKILL.
import { ftruncateSync, readFileSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { MtagentError } from '../errors';
import { BlockFile } from '../native';

export const LOCK_FILE = '.mtagent-lock';

export interface LockHolder {
  agentId: string;
  pid: number;
  hostname: string;
  configPath: string | null;
  since: string;
}

function readHolder(path: string): LockHolder | null {
  try {
    const h = JSON.parse(readFileSync(path, 'utf8')) as Partial<LockHolder>;
    if (typeof h.agentId !== 'string' || typeof h.pid !== 'number') return null;
    return {
      agentId: h.agentId,
      pid: h.pid,
      hostname: typeof h.hostname === 'string' ? h.hostname : '?',
      configPath: typeof h.configPath === 'string' ? h.configPath : null,
      since: typeof h.since === 'string' ? h.since : '?',
    };
  } catch {
    return null;
  }
}

export function describeHolder(h: LockHolder | null): string {
  if (h === null) return 'another process';
  return `agent ${h.agentId} (pid ${h.pid} on ${h.hostname}${h.configPath ? `, config ${h.configPath}` : ''}, since ${h.since})`;
}

export class RetentionLock {
  readonly path: string;
  private readonly file: BlockFile;

  private constructor(path: string, file: BlockFile) {
    this.path = path;
    this.file = file;
  }

  static async acquire(retentionDir: string, owner: { agentId: string; configPath: string | null }): Promise<RetentionLock> {
    const path = join(retentionDir, LOCK_FILE);
    const file = await BlockFile.open(path, { create: true, mode: 0o600 });
    if (!file.tryLock()) {
      await file.close();
      const holder = readHolder(path);
      throw new MtagentError(
        'retention-locked',
        `retention volume ${retentionDir} is in use by ${describeHolder(holder)}; stop that agent or give this one another retention path`,
      );
    }
    const holder: LockHolder = { agentId: owner.agentId, pid: process.pid, hostname: hostname(), configPath: owner.configPath, since: new Date().toISOString() };
    const text = Buffer.from(`${JSON.stringify(holder)}\n`);
    ftruncateSync(file.fd, 0);
    writeSync(file.fd, text, 0, text.length, 0);
    return new RetentionLock(path, file);
  }

  /** Who holds the lock now, without taking it for long. */
  static async probe(retentionDir: string): Promise<{ held: boolean; holder: LockHolder | null }> {
    const path = join(retentionDir, LOCK_FILE);
    let file: BlockFile;
    try {
      file = await BlockFile.open(path, { readOnly: true });
    } catch {
      return { held: false, holder: null };
    }
    try {
      const free = file.tryLock();
      return { held: !free, holder: free ? null : readHolder(path) };
    } finally {
      await file.close();
    }
  }

  async release(): Promise<void> {
    await this.file.close();
  }
}
