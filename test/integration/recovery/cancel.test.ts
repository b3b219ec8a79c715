// Cancelling a rebuild or a verify (Ctrl-C at the command, or the command
// going away from the daemon): the work stops, and an image file it made is
// removed; a file or device that was there before is never removed.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { rebuildGroup } from '../../../src/recovery/groups';
import { rebuild } from '../../../src/recovery/rebuild';
import { verifyPair } from '../../../src/recovery/verify';
import { MiB, fixture, openEngine, targetInUse, write } from '../../helpers/engine-fixture';
import { useTempDir } from '../../helpers/temp-dir';

const tempDir = useTempDir();
const DISK = 16 * MiB;

async function twoPairsInUse(): Promise<{ f: ReturnType<typeof fixture>; e: Awaited<ReturnType<typeof openEngine>> }> {
  const f = fixture(tempDir(), [
    { id: 'a', sizeBytes: DISK, group: 'g' },
    { id: 'b', sizeBytes: DISK, group: 'g' },
  ]);
  targetInUse(f, 'a', DISK);
  targetInUse(f, 'b', DISK);
  const e = await openEngine(f);
  for (const id of ['a', 'b']) {
    await e.openPair(id, DISK, 512);
    await e.append(id, [write(id, 1, 0, 4096), { kind: 'tag', seq: 2, time: 2_000_000, tagKind: 'app', name: 'vss', group: 'g-1' }]);
  }
  await e.settle();
  return { f, e };
}

describe('cancelling', () => {
  it('a rebuild removes the image it was writing, and leaves a file it was told to overwrite', async () => {
    const { f, e } = await twoPairsInUse();
    try {
      const out = join(f.root, 'a.img');
      const controller = new AbortController();
      const cancelAtFirstChunk = { signal: controller.signal, onProgress: () => controller.abort() };
      await expect(rebuild(e, 'a', 'latest', out, cancelAtFirstChunk)).rejects.toMatchObject({ name: 'AbortError' });
      expect(existsSync(out)).toBe(false);

      const existing = join(f.root, 'existing.img');
      writeFileSync(existing, 'an image the operator keeps');
      const again = new AbortController();
      await expect(rebuild(e, 'a', 'latest', existing, { force: true, signal: again.signal, onProgress: () => again.abort() })).rejects.toMatchObject({ name: 'AbortError' });
      expect(existsSync(existing)).toBe(true);

      // Not cancelled, the same rebuild completes: nothing was left in its way.
      expect((await rebuild(e, 'a', 'latest', out)).path).toBe(out);
    } finally {
      await e.close();
    }
  });

  it('a group recovery removes every image it made, those it finished included', async () => {
    const { f, e } = await twoPairsInUse();
    try {
      const controller = new AbortController();
      let whole = 0;
      // Cancelled while the second member is copied: the first is whole by then.
      const onProgress = (phase: string): void => {
        if (phase === 'hash') whole++;
        else if (phase === 'copy' && whole === 1) controller.abort();
      };
      await expect(rebuildGroup(e, 'g', 'latest-app', f.root, { signal: controller.signal, onProgress })).rejects.toMatchObject({ name: 'AbortError' });
      expect(whole).toBe(1);
      expect(existsSync(join(f.root, 'a.img'))).toBe(false);
      expect(existsSync(join(f.root, 'b.img'))).toBe(false);
    } finally {
      await e.close();
    }
  });

  it('a verify stops where it is', async () => {
    const { e } = await twoPairsInUse();
    try {
      const controller = new AbortController();
      controller.abort();
      await expect(verifyPair(e, 'a', { signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError' });
      expect((await verifyPair(e, 'a')).ok).toBe(true);
    } finally {
      await e.close();
    }
  });
});
