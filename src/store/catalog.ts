// The SQLite catalog: an index over the logs, never the only copy of what is
// durable. WAL mode with synchronous=NORMAL; the few changes that must
// survive power loss on their own (failover, commit) call `flushDurably()`.
import { chmodSync, closeSync, existsSync, openSync, statSync } from 'node:fs';
import Database from 'better-sqlite3';
import type { UndoSegmentSummary } from '../journal/undo-log';
import { mkdirDurable } from '../durable-files';
import { dirname } from 'node:path';
import { MtagentError } from '../errors';

export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE pairs (
     pair_id       TEXT PRIMARY KEY,
     disk_bytes    INTEGER,
     sector_bytes  INTEGER,
     durable_seq   INTEGER NOT NULL DEFAULT 0,
     applied_seq   INTEGER NOT NULL DEFAULT 0,
     needs_resync  INTEGER NOT NULL DEFAULT 1,
     failover      TEXT,            -- null, 'rolling-back' or 'failed-over'
     failover_seq  INTEGER,
     created_at    TEXT NOT NULL,
     updated_at    TEXT NOT NULL
   );
   CREATE TABLE undo_segments (
     pair_id     TEXT NOT NULL,
     segment     INTEGER NOT NULL,
     prev_seq    INTEGER NOT NULL,
     prev_time   INTEGER,
     first_seq   INTEGER,
     last_seq    INTEGER,
     first_time  INTEGER,
     last_time   INTEGER,
     bytes       INTEGER NOT NULL,
     PRIMARY KEY (pair_id, segment)
   );
   CREATE TABLE tags (
     pair_id     TEXT NOT NULL,
     seq         INTEGER NOT NULL,
     time        INTEGER NOT NULL,
     kind        TEXT NOT NULL,
     name        TEXT NOT NULL,
     group_name  TEXT,
     PRIMARY KEY (pair_id, seq)
   );
   CREATE INDEX tags_by_name ON tags (pair_id, name, seq);
   CREATE INDEX tags_by_group ON tags (group_name, pair_id);
   CREATE TABLE resync_windows (
     pair_id     TEXT NOT NULL,
     start_seq   INTEGER NOT NULL,
     start_time  INTEGER NOT NULL,
     end_seq     INTEGER,
     end_time    INTEGER,
     PRIMARY KEY (pair_id, start_seq)
   );
   CREATE TABLE events (
     id       INTEGER PRIMARY KEY AUTOINCREMENT,
     time     TEXT NOT NULL,
     pair_id  TEXT,
     kind     TEXT NOT NULL,
     message  TEXT NOT NULL
   );`,
  // The seq a pair's history restarts after (commit): durable seqs are never reused.
  `ALTER TABLE pairs ADD COLUMN history_floor INTEGER NOT NULL DEFAULT 0;`,
  // Where the ingest log ended when a pair was purged: its items before that belong to
  // the purged pair, never to a pair added again under the same id.
  `CREATE TABLE purged_pairs (
     pair_id     TEXT PRIMARY KEY,
     log_segment INTEGER NOT NULL,
     log_offset  INTEGER NOT NULL
   );`,
  // Events are kept to the newest EVENTS_KEPT; how many of each kind there ever were is counted here.
  `CREATE TABLE event_counts (kind TEXT PRIMARY KEY, n INTEGER NOT NULL);
   INSERT INTO event_counts (kind, n) SELECT kind, COUNT(*) FROM events GROUP BY kind;`,
];

/**
 * Events kept. A volume short of space shortens history about once per undo
 * segment, so an agent kept short for months would otherwise grow its catalog
 * without end.
 */
export const EVENTS_KEPT = 10_000;

export interface PairRow {
  pairId: string;
  diskBytes: number | null;
  sectorBytes: number | null;
  durableSeq: number;
  appliedSeq: number;
  needsResync: boolean;
  failover: 'rolling-back' | 'failed-over' | null;
  failoverSeq: number | null;
  historyFloor: number;
}

/** A pair's undo segment as the catalog indexes it: the log's own summary, keyed by pair. */
export interface UndoSegmentRow extends UndoSegmentSummary {
  pairId: string;
}

export interface TagRow {
  pairId: string;
  seq: number;
  time: number;
  kind: 'app' | 'crash';
  name: string;
  group: string | null;
}

export interface ResyncWindowRow {
  pairId: string;
  startSeq: number;
  startTime: number;
  endSeq: number | null;
  endTime: number | null;
}

export interface EventRow {
  id: number;
  time: string;
  pairId: string | null;
  kind: string;
  message: string;
}

interface RawPair {
  pair_id: string;
  disk_bytes: number | null;
  sector_bytes: number | null;
  durable_seq: number;
  applied_seq: number;
  needs_resync: number;
  failover: string | null;
  failover_seq: number | null;
  history_floor: number;
}

interface RawSegment {
  pair_id: string;
  segment: number;
  prev_seq: number;
  prev_time: number | null;
  first_seq: number | null;
  last_seq: number | null;
  first_time: number | null;
  last_time: number | null;
  bytes: number;
}

interface RawTag {
  pair_id: string;
  seq: number;
  time: number;
  kind: string;
  name: string;
  group_name: string | null;
}

interface RawWindow {
  pair_id: string;
  start_seq: number;
  start_time: number;
  end_seq: number | null;
  end_time: number | null;
}

function pairRow(r: RawPair): PairRow {
  return {
    pairId: r.pair_id,
    diskBytes: r.disk_bytes,
    sectorBytes: r.sector_bytes,
    durableSeq: r.durable_seq,
    appliedSeq: r.applied_seq,
    needsResync: r.needs_resync !== 0,
    failover: r.failover === 'rolling-back' || r.failover === 'failed-over' ? r.failover : null,
    failoverSeq: r.failover_seq,
    historyFloor: r.history_floor,
  };
}

function segmentRow(r: RawSegment): UndoSegmentRow {
  return {
    pairId: r.pair_id,
    segment: r.segment,
    prevSeq: r.prev_seq,
    prevTime: r.prev_time,
    firstSeq: r.first_seq,
    lastSeq: r.last_seq,
    firstTime: r.first_time,
    lastTime: r.last_time,
    bytes: r.bytes,
  };
}

function tagRow(r: RawTag): TagRow {
  return { pairId: r.pair_id, seq: r.seq, time: r.time, kind: r.kind === 'app' ? 'app' : 'crash', name: r.name, group: r.group_name };
}

function windowRow(r: RawWindow): ResyncWindowRow {
  return { pairId: r.pair_id, startSeq: r.start_seq, startTime: r.start_time, endSeq: r.end_seq, endTime: r.end_time };
}

export class Catalog {
  readonly path: string;
  private readonly db: Database.Database;

  private constructor(path: string, db: Database.Database) {
    this.path = path;
    this.db = db;
  }

  static open(path: string, options: { readonly?: boolean } = {}): Catalog {
    if (!options.readonly) {
      mkdirDurable(dirname(path));
      // SQLite gives its -wal and -shm files the database's mode: 0600, made before it opens, and narrowed if wider.
      closeSync(openSync(path, 'a', 0o600));
      if ((statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600);
      for (const side of ['-wal', '-shm']) if (existsSync(path + side) && (statSync(path + side).mode & 0o077) !== 0) chmodSync(path + side, 0o600);
    }
    const db = new Database(path, { readonly: options.readonly ?? false, fileMustExist: options.readonly ?? false });
    try {
      if (!options.readonly) {
        db.pragma('journal_mode = WAL');
        db.pragma('synchronous = NORMAL');
        db.pragma('foreign_keys = ON');
      }
      db.pragma('busy_timeout = 5000');
      const c = new Catalog(path, db);
      if (!options.readonly) c.migrate();
      return c;
    } catch (err) {
      db.close();
      const code = (err as { code?: unknown }).code;
      if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT') {
        // Everything in the catalog but the event history is an index of the retention volume.
        throw new MtagentError(
          'ERR_CATALOG_UNREADABLE',
          `the catalog ${path} cannot be read (${(err as Error).message}): move it aside with its -wal and -shm files and start again; the agent rebuilds it from the retention volume (the event history is lost)`,
          { cause: err },
        );
      }
      throw err;
    }
  }

  get schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  private migrate(): void {
    const current = this.schemaVersion;
    for (let v = current; v < MIGRATIONS.length; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v] as string);
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  /** Runs `fn` in one transaction: the catalog's unit of change is a batch, never a record. */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  /** Makes every committed change durable now (WAL checkpoint with fsync). */
  flushDurably(): void {
    this.db.pragma('wal_checkpoint(FULL)');
  }

  close(): void {
    this.db.close();
  }

  // pairs

  ensurePair(pairId: string): PairRow {
    const now = new Date().toISOString();
    this.db
      .prepare('INSERT OR IGNORE INTO pairs (pair_id, created_at, updated_at) VALUES (?, ?, ?)')
      .run(pairId, now, now);
    return this.pair(pairId) as PairRow;
  }

  pair(pairId: string): PairRow | undefined {
    const r = this.db.prepare('SELECT * FROM pairs WHERE pair_id = ?').get(pairId) as RawPair | undefined;
    return r ? pairRow(r) : undefined;
  }

  pairs(): PairRow[] {
    return (this.db.prepare('SELECT * FROM pairs ORDER BY pair_id').all() as RawPair[]).map(pairRow);
  }

  updatePair(pairId: string, change: Partial<Omit<PairRow, 'pairId'>>): void {
    const columns: Record<string, string> = {
      diskBytes: 'disk_bytes',
      sectorBytes: 'sector_bytes',
      durableSeq: 'durable_seq',
      appliedSeq: 'applied_seq',
      needsResync: 'needs_resync',
      failover: 'failover',
      failoverSeq: 'failover_seq',
      historyFloor: 'history_floor',
    };
    const sets: string[] = [];
    const values: Array<string | number | null> = [];
    for (const [key, value] of Object.entries(change)) {
      const col = columns[key];
      if (col === undefined || value === undefined) continue;
      sets.push(`${col} = ?`);
      values.push(typeof value === 'boolean' ? (value ? 1 : 0) : (value as string | number | null));
    }
    if (sets.length === 0) return;
    sets.push('updated_at = ?');
    values.push(new Date().toISOString());
    this.db.prepare(`UPDATE pairs SET ${sets.join(', ')} WHERE pair_id = ?`).run(...values, pairId);
  }

  /** Deletes a pair's rows; `logEnd` is where the ingest log ended, everything of the pair being before it. */
  deletePair(pairId: string, logEnd: { segment: number; fileOffset: number }): void {
    this.transaction(() => {
      for (const table of ['pairs', 'undo_segments', 'tags', 'resync_windows']) {
        this.db.prepare(`DELETE FROM ${table} WHERE pair_id = ?`).run(pairId);
      }
      this.db.prepare('INSERT OR REPLACE INTO purged_pairs (pair_id, log_segment, log_offset) VALUES (?, ?, ?)').run(pairId, logEnd.segment, logEnd.fileOffset);
    });
  }

  /** For each purged pair id, where the ingest log ended at the purge. */
  purgedPairs(): Map<string, { segment: number; fileOffset: number }> {
    const rows = this.db.prepare('SELECT pair_id, log_segment, log_offset FROM purged_pairs').all() as Array<{ pair_id: string; log_segment: number; log_offset: number }>;
    return new Map(rows.map((r) => [r.pair_id, { segment: r.log_segment, fileOffset: r.log_offset }]));
  }

  /** Forgets a pair's history (commit after failover); the pair row stays. */
  dropHistory(pairId: string): void {
    this.transaction(() => {
      for (const table of ['undo_segments', 'tags', 'resync_windows']) {
        this.db.prepare(`DELETE FROM ${table} WHERE pair_id = ?`).run(pairId);
      }
    });
  }

  // undo segments

  upsertSegment(row: UndoSegmentRow): void {
    this.db
      .prepare(
        `INSERT INTO undo_segments (pair_id, segment, prev_seq, prev_time, first_seq, last_seq, first_time, last_time, bytes)
         VALUES (@pairId, @segment, @prevSeq, @prevTime, @firstSeq, @lastSeq, @firstTime, @lastTime, @bytes)
         ON CONFLICT (pair_id, segment) DO UPDATE SET prev_seq = excluded.prev_seq, prev_time = excluded.prev_time,
           first_seq = excluded.first_seq, last_seq = excluded.last_seq, first_time = excluded.first_time,
           last_time = excluded.last_time, bytes = excluded.bytes`,
      )
      .run(row);
  }

  segments(pairId: string): UndoSegmentRow[] {
    return (this.db.prepare('SELECT * FROM undo_segments WHERE pair_id = ? ORDER BY segment').all(pairId) as RawSegment[]).map(segmentRow);
  }

  deleteSegment(pairId: string, segment: number): void {
    this.db.prepare('DELETE FROM undo_segments WHERE pair_id = ? AND segment = ?').run(pairId, segment);
  }

  // tags

  addTag(tag: TagRow): void {
    this.db
      .prepare('INSERT OR REPLACE INTO tags (pair_id, seq, time, kind, name, group_name) VALUES (?, ?, ?, ?, ?, ?)')
      .run(tag.pairId, tag.seq, tag.time, tag.kind, tag.name, tag.group);
  }

  tags(pairId: string): TagRow[] {
    return (this.db.prepare('SELECT * FROM tags WHERE pair_id = ? ORDER BY seq').all(pairId) as RawTag[]).map(tagRow);
  }

  deleteTagsBefore(pairId: string, seqExclusive: number): void {
    this.db.prepare('DELETE FROM tags WHERE pair_id = ? AND seq < ?').run(pairId, seqExclusive);
  }

  deleteTagsAfter(pairId: string, seqExclusive: number): void {
    this.db.prepare('DELETE FROM tags WHERE pair_id = ? AND seq > ?').run(pairId, seqExclusive);
  }

  // resync windows

  startResync(pairId: string, seq: number, time: number): void {
    this.db
      .prepare('INSERT OR REPLACE INTO resync_windows (pair_id, start_seq, start_time, end_seq, end_time) VALUES (?, ?, ?, NULL, NULL)')
      .run(pairId, seq, time);
  }

  /**
   * Ends every window still open before `seq`: a resync begun again before the
   * last one ended (the connection dropped) leaves two open, and the target is
   * inconsistent from the first start until this end (docs/protocol.md).
   */
  endResync(pairId: string, seq: number, time: number): void {
    this.db.prepare('UPDATE resync_windows SET end_seq = ?, end_time = ? WHERE pair_id = ? AND end_seq IS NULL AND start_seq < ?').run(seq, time, pairId, seq);
  }

  resyncWindows(pairId: string): ResyncWindowRow[] {
    return (this.db.prepare('SELECT * FROM resync_windows WHERE pair_id = ? ORDER BY start_seq').all(pairId) as RawWindow[]).map(windowRow);
  }

  /** Drops windows that ended before the oldest retained point. */
  deleteWindowsBefore(pairId: string, seq: number): void {
    this.db.prepare('DELETE FROM resync_windows WHERE pair_id = ? AND end_seq IS NOT NULL AND end_seq < ?').run(pairId, seq);
  }

  // events: what the agent did to history on its own, for status and the support bundle

  addEvent(pairId: string | null, kind: string, message: string, kept = EVENTS_KEPT): void {
    this.transaction(() => {
      const id = this.db.prepare('INSERT INTO events (time, pair_id, kind, message) VALUES (?, ?, ?, ?)').run(new Date().toISOString(), pairId, kind, message).lastInsertRowid;
      this.db.prepare('INSERT INTO event_counts (kind, n) VALUES (?, 1) ON CONFLICT (kind) DO UPDATE SET n = n + 1').run(kind);
      this.db.prepare('DELETE FROM events WHERE id <= ?').run(Number(id) - kept);
    });
  }

  /** How many events of `kind` there ever were, the ones no longer kept included. */
  eventCount(kind: string): number {
    const row = this.db.prepare('SELECT n FROM event_counts WHERE kind = ?').get(kind) as { n: number } | undefined;
    return row?.n ?? 0;
  }

  /** When the newest event of `kind` kept happened (ISO-8601), or null. */
  lastEventTime(kind: string): string | null {
    const row = this.db.prepare('SELECT time FROM events WHERE kind = ? ORDER BY id DESC LIMIT 1').get(kind) as { time: string } | undefined;
    return row?.time ?? null;
  }

  events(limit = 100): EventRow[] {
    const rows = this.db.prepare('SELECT id, time, pair_id, kind, message FROM events ORDER BY id DESC LIMIT ?').all(limit) as Array<{
      id: number;
      time: string;
      pair_id: string | null;
      kind: string;
      message: string;
    }>;
    return rows.map((r) => ({ id: r.id, time: r.time, pairId: r.pair_id, kind: r.kind, message: r.message }));
  }
}
