import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkRetentionVolume, failedRules, type VolumeContext } from '../../../src/retention/volume-rules';
import { fixture, openEngine, MiB } from '../../helpers/engine-fixture';
import { useTempDir } from '../../helpers/temp-dir';

const tempDir = useTempDir();

function ctx(root: string, over: Partial<VolumeContext> = {}): VolumeContext {
  mkdirSync(join(root, 'retention'), { recursive: true });
  return {
    retentionPath: join(root, 'retention'),
    targets: [join(root, 'datastore', 'a.img')],
    installDir: join(root, 'install'),
    dataDir: join(root, 'data'),
    agentId: 'mt-test',
    configPath: join(root, 'agent.yaml'),
    ...over,
  };
}

function rule(results: Awaited<ReturnType<typeof checkRetentionVolume>>, name: string) {
  return results.find((r) => r.rule === name);
}

describe('retention volume rules', () => {
  it('passes a dedicated, writable directory on ext4', async () => {
    const results = await checkRetentionVolume(ctx(tempDir()));
    expect(failedRules(results)).toEqual([]);
    expect(results.map((r) => r.rule)).toEqual(['directory', 'filesystem', 'persistent', 'capacity', 'writable', 'no-targets-inside', 'dedicated', 'not-a-cache-volume', 'not-in-use']);
  });

  it('fails a missing path and stops there', async () => {
    const results = await checkRetentionVolume(ctx(tempDir(), { retentionPath: '/no/such/retention' }));
    expect(results).toEqual([{ rule: 'directory', ok: false, detail: expect.stringContaining('does not exist') }]);
  });

  it('fails a volume that holds a target, other files, the dataDir or the installation', async () => {
    const root = tempDir();
    const c = ctx(root, { targets: [join(root, 'retention', 'disk.img')], dataDir: join(root, 'retention', 'data') });
    writeFileSync(join(root, 'retention', 'notes.txt'), 'x');
    const results = await checkRetentionVolume(c);
    expect(rule(results, 'no-targets-inside')).toMatchObject({ ok: false, detail: expect.stringContaining('disk.img') });
    expect(rule(results, 'dedicated')).toMatchObject({ ok: false, detail: expect.stringContaining('notes.txt') });
    expect(rule(results, 'not-a-cache-volume')).toMatchObject({ ok: false, detail: expect.stringContaining('dataDir') });
    const inst = await checkRetentionVolume(ctx(root, { installDir: join(root, 'retention', 'opt') }));
    expect(rule(inst, 'not-a-cache-volume')).toMatchObject({ ok: false, detail: expect.stringContaining('installation') });
  });

  it('fails tmpfs as not persistent', async () => {
    const dir = join('/dev/shm', `mtagent-rules-${process.pid}-${Date.now()}`);
    mkdirSync(dir);
    try {
      const results = await checkRetentionVolume({ ...ctx(tempDir()), retentionPath: dir });
      expect(rule(results, 'persistent')).toMatchObject({ ok: false, detail: expect.stringContaining('tmpfs') });
    } finally {
      require('node:fs').rmSync(dir, { recursive: true });
    }
  });

  it('tells another agent from the same configuration holding the lock', async () => {
    const root = tempDir();
    const f = fixture(root, [{ id: 'a', sizeBytes: MiB }], { configPath: join(root, 'agent.yaml') });
    const e = await openEngine(f);
    try {
      const same = await checkRetentionVolume(ctx(root));
      expect(rule(same, 'not-in-use')).toMatchObject({ ok: true, detail: expect.stringContaining(`this configuration's daemon (pid ${process.pid})`) });
      const other = await checkRetentionVolume(ctx(root, { agentId: 'mt-other', configPath: join(root, 'other.yaml') }));
      expect(rule(other, 'not-in-use')).toMatchObject({ ok: false, detail: expect.stringContaining('in use by agent mt-test') });
    } finally {
      await e.close();
    }
    expect(rule(await checkRetentionVolume(ctx(root, { agentId: 'mt-other' })), 'not-in-use')?.ok).toBe(true);
  });
});
