import { chmodSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { Catalog, MIGRATIONS } from '../../../src/store/catalog';
import { windowAt } from '../../../src/recovery/points';
import { useTempDir } from '../../helpers/temp-dir';

const tempDir = useTempDir();

/** A fresh catalog for `check`, closed after it. */
function withCatalog(check: (c: Catalog) => void): void {
  const c = Catalog.open(join(tempDir(), 'catalog.db'));
  try {
    check(c);
  } finally {
    c.close();
  }
}

describe('catalog file', () => {
  it('is made 0600, and a wider one is narrowed with its -wal and -shm files', () => {
    const path = join(tempDir(), 'catalog.db');
    withCatalogAt(path, () => undefined);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    chmodSync(path, 0o644);
    withCatalogAt(path, () => {
      for (const f of [path, `${path}-wal`, `${path}-shm`]) if (existsSync(f)) expect(statSync(f).mode & 0o777, f).toBe(0o600);
    });
  });
});

function withCatalogAt(path: string, check: (c: Catalog) => void): void {
  const c = Catalog.open(path);
  try {
    check(c);
  } finally {
    c.close();
  }
}

describe('catalog resync windows', () => {
  it('a resync begun again before the last one ended is one window, from the first start to the end', () => {
    withCatalog((c) => {
      c.ensurePair('p');
      c.startResync('p', 10, 1_000);
      // The connection dropped; the process server starts the resync over.
      c.startResync('p', 20, 2_000);
      c.endResync('p', 30, 3_000);
      const windows = c.resyncWindows('p');
      expect(windows.every((w) => w.endSeq === 30)).toBe(true);
      for (const seq of [10, 15, 20, 29]) expect(windowAt(windows, seq), `seq ${seq}`).not.toBeNull();
      for (const seq of [9, 30, 31]) expect(windowAt(windows, seq), `seq ${seq}`).toBeNull();
      // A later resync is a window of its own, and an earlier closed one is left alone.
      c.startResync('p', 40, 4_000);
      c.endResync('p', 50, 5_000);
      expect(c.resyncWindows('p').map((w) => [w.startSeq, w.endSeq])).toEqual([
        [10, 30],
        [20, 30],
        [40, 50],
      ]);
    });
  });
});

describe('catalog purged pairs', () => {
  it('remembers where the ingest log ended when a pair was purged, the last purge winning', () => {
    withCatalog((c) => {
      c.ensurePair('p');
      c.startResync('p', 1, 1);
      c.deletePair('p', { segment: 3, fileOffset: 8192 });
      expect(c.pair('p')).toBeUndefined();
      expect(c.resyncWindows('p')).toEqual([]);
      expect(c.purgedPairs().get('p')).toEqual({ segment: 3, fileOffset: 8192 });
      c.ensurePair('p');
      c.deletePair('p', { segment: 5, fileOffset: 0 });
      expect([...c.purgedPairs()]).toEqual([['p', { segment: 5, fileOffset: 0 }]]);
    });
  });
});

describe('catalog events', () => {
  it('keeps the newest events only, and counts every one of each kind', () => {
    withCatalog((c) => {
      for (let i = 0; i < 250; i++) c.addEvent('p', i % 5 === 0 ? 'purge' : 'history-shortened', `event ${i}`, 100);
      const kept = c.events(1000);
      expect(kept).toHaveLength(100);
      expect(kept[0]?.message).toBe('event 249');
      expect(kept[99]?.message).toBe('event 150');
      expect(c.eventCount('history-shortened')).toBe(200);
      expect(c.eventCount('purge')).toBe(50);
      expect(c.eventCount('never')).toBe(0);
    });
  });

  it('counts the events of a catalog made before the counts were kept', () => {
    const path = join(tempDir(), 'catalog.db');
    const old = new Database(path);
    // The schema as it was: every migration before event_counts.
    old.exec(MIGRATIONS.slice(0, MIGRATIONS.length - 1).join('\n'));
    old.pragma(`user_version = ${MIGRATIONS.length - 1}`);
    for (let i = 0; i < 3; i++) old.prepare("INSERT INTO events (time, pair_id, kind, message) VALUES ('t', 'p', 'history-shortened', 'm')").run();
    old.close();
    const c = Catalog.open(path);
    try {
      expect(c.eventCount('history-shortened')).toBe(3);
      c.addEvent('p', 'history-shortened', 'm');
      expect(c.eventCount('history-shortened')).toBe(4);
    } finally {
      c.close();
    }
  });
});
