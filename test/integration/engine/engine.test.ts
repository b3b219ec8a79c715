import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { EngineError } from '../../../src/engine/errors';
import { createLogger } from '../../../src/log';
import type { StreamItem } from '../../../src/journal/items';
import { rebuild } from '../../../src/recovery/rebuild';
import { fixture, openEngine, payload, write, KiB, MiB, type Fixture } from '../../helpers/engine-fixture';
import { PointRefusedError } from '../../../src/recovery/points';
import { releaseBuffer } from '../../../src/native';
import { useTempDir } from '../../helpers/temp-dir';

const tempDir = useTempDir();

/** A logger whose lines are kept: `text()` is everything logged so far. */
function capturedLog(): { logger: ReturnType<typeof createLogger>; text: () => string } {
  let text = '';
  const destination = new Writable({ write: (chunk: Buffer, _enc, done) => ((text += chunk.toString()), done()) });
  return { logger: createLogger({ destination }), text: () => text };
}

/** Opens p1 (a MiB disk), appends `items`, waits until they are applied, and closes the engine. */
async function appliedAndClosed(f: Fixture, items: StreamItem[]): Promise<void> {
  const e = await openEngine(f);
  await e.openPair('p1', MiB, 512);
  await e.append('p1', items);
  await e.settle();
  await e.close();
}

describe('engine', () => {
  it('journals, acknowledges and applies writes to an image target', async () => {
    const f = fixture(tempDir(), [{ id: 'p1', sizeBytes: 4 * MiB }]);
    const e = await openEngine(f);
    try {
      expect(await e.openPair('p1', 4 * MiB, 512)).toMatchObject({ durableSeq: 0, needsResync: true });
      expect(await e.append('p1', [write('p1', 1, 0, 64 * KiB), write('p1', 2, 8192, 4096)])).toBe(2);
      await e.settle();
      const status = e.status('p1');
      expect(status).toMatchObject({ durableSeq: 2, appliedSeq: 2 });
    } finally {
      await e.close();
    }
    const img = readFileSync(join(f.root, 'datastore', 'p1.img'));
    expect(img.length).toBe(4 * MiB);
    const expected = Buffer.alloc(4 * MiB);
    payload('p1', 1, 64 * KiB).copy(expected, 0);
    payload('p1', 2, 4096).copy(expected, 8192);
    expect(img.equals(expected)).toBe(true);
  });

  it('applies and rolls back sector writes on a disk whose size is not a whole number of 4 KiB blocks', async () => {
    // The applier's extents are widened to 4 KiB for O_DIRECT; the last one
    // stops at the end of the disk and goes through the page cache instead.
    const size = MiB + 512;
    const f = fixture(tempDir(), [{ id: 'p1', sizeBytes: size }]);
    const e = await openEngine(f);
    try {
      await e.openPair('p1', size, 512);
      await e.append('p1', [write('p1', 1, MiB - 1024, 1536), write('p1', 2, 512, 512), write('p1', 3, MiB, 512)]);
      await e.settle();
      const at = (seq: number): Buffer => {
        const b = Buffer.alloc(size);
        if (seq >= 1) payload('p1', 1, 1536).copy(b, MiB - 1024);
        if (seq >= 2) payload('p1', 2, 512).copy(b, 512);
        if (seq >= 3) payload('p1', 3, 512).copy(b, MiB);
        return b;
      };
      expect(readFileSync(join(f.root, 'datastore', 'p1.img')).equals(at(3))).toBe(true);
      for (const seq of [0, 1, 2]) {
        const out = join(f.root, `at-${seq}.img`);
        await rebuild(e, 'p1', `seq:${seq}`, out, { force: true });
        expect(readFileSync(out).equals(at(seq)), `seq ${seq}`).toBe(true);
      }
    } finally {
      await e.close();
    }
  });

  it('applies a step that holds no write (ticks and tags only) without pausing the pair', async () => {
    const log = capturedLog();
    const f = fixture(tempDir(), [{ id: 'p1', sizeBytes: MiB }], { undoSegmentBytes: 4 * MiB, logger: log.logger });
    const e = await openEngine(f);
    try {
      await e.openPair('p1', MiB, 512);
      // Bigger than the applier pools: nothing idle is left for the next step to take.
      await e.append('p1', [write('p1', 1, 0, 512 * KiB)]);
      await e.settle();
      await e.append('p1', [{ kind: 'tick', seq: 2, time: 2_000_000 }, { kind: 'tag', seq: 3, time: 3_000_000, tagKind: 'app', name: 'only-a-tag', group: null }]);
      await e.settle();
      expect(e.status('p1')).toMatchObject({ appliedSeq: 3, state: 'unprotected', lastError: null });
      expect(log.text()).not.toContain('applying paused');
    } finally {
      await e.close();
    }
  });

  it('remembers durable seqs across a restart and refuses gaps', async () => {
    const f = fixture(tempDir(), [{ id: 'p1', sizeBytes: 4 * MiB }]);
    let e = await openEngine(f);
    await e.openPair('p1', 4 * MiB, 512);
    for (let s = 1; s <= 20; s++) await e.append('p1', [write('p1', s, (s % 8) * 4096, 4096)]);
    await e.close();
    e = await openEngine(f);
    try {
      expect(await e.openPair('p1', 4 * MiB, 512)).toMatchObject({ durableSeq: 20, needsResync: true });
      await expect(e.append('p1', [write('p1', 22, 0, 4096)])).rejects.toMatchObject({ code: 'seq-gap', seq: 22 });
      await expect(e.append('p1', [write('p1', 21, 0, 100)])).rejects.toMatchObject({ code: 'bad-record' });
      await expect(e.append('p1', [write('p1', 21, 4 * MiB, 512)])).rejects.toMatchObject({ code: 'bad-record' });
      await expect(e.openPair('nope', 4 * MiB, 512)).rejects.toBeInstanceOf(EngineError);
      await expect(e.openPair('p1', 8 * MiB, 512)).rejects.toMatchObject({ code: 'size-mismatch' });
    } finally {
      await e.close();
    }
  });
});

describe('engine: a lost ingest segment', () => {
  /** An engine whose pair p1 journaled four 512 KiB writes (one ingest segment each) while its target was away, closed. */
  async function journaledNotApplied(log: ReturnType<typeof capturedLog>): Promise<{ f: Fixture; target: string }> {
    const f = fixture(tempDir(), [{ id: 'p1', sizeBytes: 4 * MiB }], { undoSegmentBytes: 4 * MiB, logger: log.logger });
    const target = join(f.root, 'datastore', 'p1.img');
    const e = await openEngine(f);
    await e.openPair('p1', 4 * MiB, 512);
    renameSync(target, `${target}.away`);
    for (let seq = 1; seq <= 4; seq++) await e.append('p1', [write('p1', seq, (seq - 1) * 512 * KiB, 512 * KiB)]);
    await e.close();
    return { f, target };
  }

  it('at start-up: the pair is flagged, its points from the gap on are refused until a resync ends, and it asks for a resync', async () => {
    const log = capturedLog();
    const { f, target } = await journaledNotApplied(log);
    // Seq 1, never applied, is lost with its segment (deleted by hand). Start-up does not
    // see a hole in the log: the log just begins later, as it does once segments are recycled.
    rmSync(join(f.options.retentionDir, 'ingest', '00000001.log'));
    renameSync(`${target}.away`, target);
    const e = await openEngine(f);
    try {
      await e.settle();
      expect(e.status('p1')).toMatchObject({ state: 'error', needsResync: true, durableSeq: 4, appliedSeq: 4 });
      expect(e.status('p1').lastError).toMatch(/acknowledged items missing: seq 1\.\.1 /);
      expect(log.text()).toContain('acknowledged items missing from the ingest log');
      expect(e.catalog.eventCount('acknowledged-items-missing')).toBe(1);
      const out = join(f.root, 'point.img');
      await expect(rebuild(e, 'p1', 'seq:4', out, { force: true })).rejects.toBeInstanceOf(PointRefusedError);
      // The process server is told to resync: it sends every block again, and the points after its end are good.
      expect((await e.openPair('p1', 4 * MiB, 512)).needsResync).toBe(true);
      await e.append('p1', [{ kind: 'resync-start', seq: 5, time: 5_000_000 }]);
      for (let i = 0; i < 4; i++) {
        await e.append('p1', [{ kind: 'write', seq: 6 + i, time: (6 + i) * 1_000_000, offset: i * 512 * KiB, data: payload('p1', i + 1, 512 * KiB), resync: true }]);
      }
      await e.append('p1', [{ kind: 'resync-end', seq: 10, time: 10_000_000 }]);
      await e.settle();
      const source = Buffer.concat([...[1, 2, 3, 4].map((seq) => payload('p1', seq, 512 * KiB)), Buffer.alloc(2 * MiB)]);
      await rebuild(e, 'p1', 'seq:10', out, { force: true });
      expect(readFileSync(out).equals(source)).toBe(true);
      expect(readFileSync(target).equals(source)).toBe(true);
      await expect(rebuild(e, 'p1', 'seq:4', out, { force: true })).rejects.toBeInstanceOf(PointRefusedError);
    } finally {
      await e.close();
    }
  });

  it('while running: the applier stops once, stoppedOnError settles, appends are refused, and the engine still closes', async () => {
    const log = capturedLog();
    const { f, target } = await journaledNotApplied(log);
    const e = await openEngine(f);
    try {
      // Gone while the pair waits for its target: resuming reads the log and fails.
      rmSync(join(f.options.retentionDir, 'ingest', '00000001.log'));
      renameSync(`${target}.away`, target);
      const err = await Promise.race([e.stoppedOnError, new Promise((r) => setTimeout(() => r('timed out'), 10_000))]);
      expect((err as NodeJS.ErrnoException).code).toBe('ENOENT');
      // The applier does not go round again on the same error.
      await new Promise((r) => setTimeout(r, 300));
      expect(log.text().split('cannot pass').length - 1).toBe(1);
      await expect(e.append('p1', [write('p1', 5, 0, 512)])).rejects.toMatchObject({ code: 'internal' });
    } finally {
      await e.close();
    }
  });
});

describe('engine: a pair known only by its retention', () => {
  it('opens with its history when the catalog was lost and the pair left the configuration', async () => {
    const f = fixture(tempDir(), [{ id: 'p1', sizeBytes: MiB }]);
    await appliedAndClosed(f, [write('p1', 1, 0, 4096), write('p1', 2, 4096, 4096)]);
    rmSync(f.options.dataDir, { recursive: true });
    mkdirSync(f.options.dataDir);
    const again = await openEngine({ ...f, options: { ...f.options, pairs: [] } });
    try {
      expect(again.status('p1')).toMatchObject({ configured: false, state: 'error', durableSeq: 2 });
    } finally {
      await again.close();
    }
  });
});

describe('engine: a pair purged and added again under the same id', () => {
  it('does not take the old pair items still in the ingest log for the new pair after a restart', async () => {
    const f = fixture(tempDir(), [{ id: 'p1', sizeBytes: MiB }], { ingestSegmentBytes: 16 * MiB });
    const policy = f.options.policy;
    const e = await openEngine(f);
    await e.openPair('p1', MiB, 512);
    for (let seq = 1; seq <= 3; seq++) await e.append('p1', [write('p1', seq, 0, 64 * KiB)]);
    await e.settle();
    await e.reconfigure([], policy, null);
    await e.purge('p1');
    // Back under the same id, on another disk: a new pair that starts at seq 1.
    const fresh = { id: 'p1', sizeBytes: MiB, target: join(f.root, 'datastore', 'p1-new.img'), group: null };
    await e.reconfigure([fresh], policy, null);
    expect(await e.openPair('p1', MiB, 512)).toMatchObject({ durableSeq: 0 });
    const data = Buffer.alloc(64 * KiB, 0xab);
    await e.append('p1', [{ kind: 'write', seq: 1, time: 1_000_000, offset: 64 * KiB, data, resync: false }]);
    await e.settle();
    await e.close();
    const again = await openEngine({ ...f, options: { ...f.options, pairs: [fresh] } });
    try {
      await again.settle();
      expect(again.status('p1')).toMatchObject({ durableSeq: 1, appliedSeq: 1 });
      const image = readFileSync(fresh.target);
      expect(image.subarray(0, 64 * KiB).equals(Buffer.alloc(64 * KiB)), 'the old pair data is not applied to the new disk').toBe(true);
      expect(image.subarray(64 * KiB, 128 * KiB).equals(data)).toBe(true);
    } finally {
      await again.close();
    }
  });
});

describe('engine: a target away for a while', () => {
  it('logs the failure once, not at every retry, and logs the resume', async () => {
    const log = capturedLog();
    const f = fixture(tempDir(), [{ id: 'p1', sizeBytes: MiB }], { logger: log.logger });
    const target = join(f.root, 'datastore', 'p1.img');
    const e = await openEngine(f);
    try {
      await e.openPair('p1', MiB, 512);
      renameSync(target, `${target}.away`);
      await e.append('p1', [write('p1', 1, 0, 4096)]);
      // Twenty retries (targetRetryMs is 50 ms here).
      await new Promise((r) => setTimeout(r, 1000));
      expect(e.status('p1')).toMatchObject({ state: 'target-unavailable', appliedSeq: 0, applyLagBytes: 4096 });
      const count = (text: string): number => log.text().split(text).length - 1;
      expect(count('applying paused for this pair')).toBe(1);
      expect(count('target unavailable; items are journaled')).toBe(1);
      renameSync(`${target}.away`, target);
      await e.waitApplied('p1', 1, 10_000);
      // Said once the catch-up is done, just after the item is applied.
      for (let i = 0; i < 100 && count('applying resumed') === 0; i++) await new Promise((r) => setTimeout(r, 10));
      expect(count('applying resumed')).toBe(1);
      expect(e.status('p1')).toMatchObject({ lastError: null, applyLagBytes: 0 });
    } finally {
      await e.close();
    }
  });
});

describe('engine: an unreadable catalog', () => {
  it('is refused with a named error, and rebuilt from the retention volume once moved aside', async () => {
    const f = fixture(tempDir(), [{ id: 'p1', sizeBytes: MiB }]);
    await appliedAndClosed(f, [write('p1', 1, 0, 4096), { kind: 'tag', seq: 2, time: 2_000_000, tagKind: 'app', name: 'vss-1', group: null }, write('p1', 3, 0, 4096)]);
    const catalog = join(f.options.dataDir, 'catalog.db');
    writeFileSync(catalog, Buffer.alloc(8192, 0x5a));
    rmSync(`${catalog}-wal`, { force: true });
    rmSync(`${catalog}-shm`, { force: true });
    await expect(openEngine(f)).rejects.toMatchObject({ code: 'ERR_CATALOG_UNREADABLE', message: expect.stringContaining(catalog) });
    renameSync(catalog, `${catalog}.bad`);
    const again = await openEngine(f);
    try {
      // What the ingest log still holds is applied again (items with an undo record are replayed, not captured twice).
      await again.settle();
      expect(again.status('p1')).toMatchObject({ durableSeq: 3, appliedSeq: 3 });
      expect(again.catalog.tags('p1').map((t) => t.name)).toEqual(['vss-1']);
      const out = join(f.root, 'at-1.img');
      await rebuild(again, 'p1', 'seq:1', out, { force: true });
      const expected = Buffer.alloc(MiB);
      payload('p1', 1, 4096).copy(expected, 0);
      expect(readFileSync(out).equals(expected)).toBe(true);
    } finally {
      await again.close();
    }
  });
});

describe('engine: the memory items arrive in', () => {
  it('may be freed once their append settles: what is journaled and applied is a copy the engine made', async () => {
    // The replication endpoint frees each message as soon as its items are durable.
    const DISK = 4 * MiB;
    const log = capturedLog();
    // The applier gathers until the settle below: it takes every item only after its message was freed.
    const f = fixture(tempDir(), [{ id: 'p1', sizeBytes: DISK }], { applyGatherMs: 60_000, cycleBytes: 4 * MiB, undoSegmentBytes: 16 * MiB, ingestSegmentBytes: 8 * MiB, logger: log.logger });
    const e = await openEngine(f);
    const expected = Buffer.alloc(DISK);
    let seq = 0;
    let freed = 0;
    try {
      await e.openPair('p1', DISK, 512);
      const inFlight: Array<Promise<void>> = [];
      for (let m = 0; m < 40; m++) {
        const message = Buffer.allocUnsafe(16 * 4 * KiB);
        const items: StreamItem[] = [];
        for (let i = 0; i < 16; i++) {
          seq++;
          const data = message.subarray(i * 4 * KiB, (i + 1) * 4 * KiB);
          payload('p1', seq, 4 * KiB).copy(data);
          const offset = ((seq * 37) % (DISK / (4 * KiB))) * 4 * KiB;
          data.copy(expected, offset);
          items.push({ kind: 'write', seq, time: seq * 1000, offset, data, resync: false });
        }
        inFlight.push(e.append('p1', items).then(() => void (freed += releaseBuffer(message))));
        if (inFlight.length >= 4) await inFlight.shift();
      }
      await Promise.all(inFlight);
      expect(freed).toBe(40 * 16 * 4 * KiB);
      await e.settle();
      expect(e.status('p1')).toMatchObject({ durableSeq: seq, appliedSeq: seq, lastError: null });
    } finally {
      await e.close();
    }
    expect(readFileSync(join(f.root, 'datastore', 'p1.img')).equals(expected)).toBe(true);
    // Had the applier been handed the freed views, it would have paused the pair and read the items back from the log.
    expect(log.text()).not.toContain('applying paused');
  });
});

describe('engine: background I/O gives way to acknowledgements', () => {
  it('while acknowledgements come first, and not once someone waits on the applier or the engine is closed', async () => {
    const f = fixture(tempDir(), [{ id: 'p1', sizeBytes: MiB }]);
    const e = await openEngine(f);
    try {
      await e.openPair('p1', MiB, 512);
      expect(e.io.givingWay).toBe(true);
      // Someone waiting on an applied seq: the applier must not be held back.
      const target = join(f.root, 'datastore', 'p1.img');
      renameSync(target, `${target}.away`);
      await e.append('p1', [write('p1', 1, 0, 4096)]);
      const waiting = e.waitApplied('p1', 1, 10_000);
      expect(e.io.givingWay).toBe(false);
      renameSync(`${target}.away`, target);
      await waiting;
      expect(e.io.givingWay).toBe(true);
    } finally {
      await e.close();
    }
    expect(e.io.givingWay).toBe(false);
  });
});

describe('engine: a retention cap too small for the pairs', () => {
  it('is refused at open and on reconfigure, naming what is needed; a reconfigure refused changes nothing', async () => {
    // The fixture's segments: 1 MiB ingest, 256 KiB undo. Two pairs need 2 MiB + 4 x 256 KiB = 3 MiB.
    const pairs = [
      { id: 'p1', sizeBytes: MiB },
      { id: 'p2', sizeBytes: MiB },
    ];
    const small = fixture(tempDir(), pairs, { maxBytes: 3 * MiB - 1 });
    await expect(openEngine(small)).rejects.toMatchObject({ code: 'ERR_RETENTION_TOO_SMALL', message: expect.stringContaining('3145728 bytes 2 pair(s) need') });
    const f = fixture(tempDir(), pairs, { maxBytes: 3 * MiB });
    const e = await openEngine(f);
    try {
      const three = [...pairs, { id: 'p3', sizeBytes: MiB }].map((p) => ({ ...p, target: join(f.root, 'datastore', `${p.id}.img`), group: null }));
      await expect(e.reconfigure(three, f.options.policy, 3 * MiB)).rejects.toMatchObject({ code: 'ERR_RETENTION_TOO_SMALL' });
      expect(e.pairIds().sort()).toEqual(['p1', 'p2']);
    } finally {
      await e.close();
    }
  });
});
