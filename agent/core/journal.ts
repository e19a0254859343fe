/**
 * The crash-safe journal: a key → value log on local disk. Every change is one JSON line,
 * appended and fsynced before the agent acts on it or sends anything that depends on it, so after
 * `kill -9` or a power cut the last state of every key is on disk. Replay keeps the last value
 * per key; a torn last line (power cut mid-write) is dropped. When the file grows past its limit
 * it is compacted: the live keys are written to a new file, fsynced, and renamed over the old one
 * (an atomic switch), so the journal stays small on an SD card however long the device runs. The
 * next compaction waits until the file is COMPACT_GROWTH times its live size: when the live keys
 * alone pass the limit (an edge keeping hundreds of bills), compacting on every write would
 * rewrite the whole file each time.
 *
 * Group commit: `stage` records a change without writing it; every staged change goes to disk in
 * one write and one fsync at the next `flush`, which `put` does at once and the event loop does by
 * the end of the turn at the latest. A busy edge changes ~18 records a session, each fsynced alone
 * before. Staging keeps the rule above only where whoever sends makes the journal flush first: the
 * bus flushes it before any of its writes leave the process (agent/core/bus.ts), and a transaction
 * is sent after a `put`. Reads see staged values at once.
 */
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { journalReplacer } from './json.js';

/**
 * A value as the journal's JSON (bigints as `"123n"`, agent/core/json.ts). Without a replacer first:
 * V8's fast path, several times quicker on a session record; a bigint anywhere makes it throw, and
 * only then the replacer runs.
 */
function toJson(value: unknown): string {
  try {
    return JSON.stringify(value);
  } catch (err) {
    if (!(err instanceof TypeError)) throw err;
    return JSON.stringify(value, journalReplacer);
  }
}

/**
 * Past the limit, the file is compacted when it is this many times its live size. Each compaction
 * rewrites the live keys once per (growth − 1) × live bytes appended: at 1.5 an edge rewrote twice
 * what it wrote, ~2 % of its CPU (bench:edge); at 3, half (and an SD card is written less). A
 * journal whose live keys stay under the limit compacts at the limit, as before.
 */
export const COMPACT_GROWTH = 3;

export interface JournalOptions {
  /** Compact when the file passes this size (bytes). */
  maxBytes?: number;
  /** Called before each write; tests use it to crash at a chosen point. */
  beforeWrite?: (key: string, value: unknown) => void;
}

export class Journal {
  readonly path: string;
  private fd: number;
  /** The live keys, each with its value as the JSON text written (parsed again only when read). */
  private readonly entries = new Map<string, string>();
  private bytes = 0;
  private readonly maxBytes: number;
  /** Compact when the file passes this: the limit, or COMPACT_GROWTH × the live size if that is more. */
  private compactAt: number;
  /** Compactions since open (for tests and metrics). */
  compactions = 0;
  /** Writes with their fsync since open (a flush writes every change staged before it). */
  flushes = 0;
  /** Lines staged, not yet written. */
  private pending: string[] = [];
  private flushScheduled = false;
  private closed = false;
  private readonly beforeWrite: JournalOptions['beforeWrite'];
  /** Lines dropped at replay (a torn tail). */
  readonly dropped: number;

  constructor(dir: string, opts: JournalOptions = {}) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.path = join(dir, 'journal.jsonl');
    this.maxBytes = opts.maxBytes ?? 512 * 1024;
    this.compactAt = this.maxBytes;
    this.beforeWrite = opts.beforeWrite;
    this.dropped = existsSync(this.path) ? this.replay() : 0;
    this.fd = openSync(this.path, 'a', 0o600);
    this.bytes = statSync(this.path).size;
    // Start from a clean file: the torn tail (if any) is gone, and old history too.
    if (this.dropped > 0 || this.bytes > this.maxBytes / 2) this.compact();
  }

  private replay(): number {
    let dropped = 0;
    for (const line of readFileSync(this.path, 'utf8').split('\n')) {
      if (!line) continue;
      try {
        const { k, v } = JSON.parse(line) as { k: string; v: unknown };
        if (v === null) this.entries.delete(k);
        else this.entries.set(k, JSON.stringify(v));
      } catch {
        dropped++;
      }
    }
    return dropped;
  }

  /** The live keys of a journal on disk, read without opening it for writing (for tools and the sim). */
  static read(dir: string): Map<string, unknown> {
    const out = new Map<string, unknown>();
    const path = join(dir, 'journal.jsonl');
    if (!existsSync(path)) return out;
    for (const line of readFileSync(path, 'utf8').split('\n')) {
      try {
        const { k, v } = JSON.parse(line) as { k: string; v: unknown };
        if (v === null) out.delete(k);
        else out.set(k, v);
      } catch {
        // a torn last line
      }
    }
    return out;
  }

  /** The value last put under `key` (a copy: changing it changes nothing here). */
  get<T>(key: string): T | undefined {
    const json = this.entries.get(key);
    return json === undefined ? undefined : (JSON.parse(json) as T);
  }

  /** Keys starting with `prefix`, with their values (copies). */
  list<T>(prefix: string): [string, T][] {
    const out: [string, T][] = [];
    for (const [k, json] of this.entries) if (k.startsWith(prefix)) out.push([k, JSON.parse(json) as T]);
    return out;
  }

  get size(): number {
    return this.entries.size;
  }

  get fileBytes(): number {
    return this.bytes;
  }

  /** Writes and syncs (with everything staged before it); returns only once the value is on disk. `undefined`/`null` deletes. */
  put(key: string, value: unknown): void {
    this.stage(key, value);
    this.flush();
  }

  /**
   * Records a change, on disk at the next `flush` (a `put`, the bus before it sends anything, or
   * the end of this turn of the event loop at the latest). `undefined`/`null` deletes.
   */
  stage(key: string, value: unknown): void {
    if (this.closed) throw new Error(`journal ${this.path} is closed`);
    this.beforeWrite?.(key, value);
    const json = value === undefined || value === null ? 'null' : toJson(value);
    // One serialisation per write: the line, and the copy kept for reads, are the same text.
    this.pending.push(`{"k":${JSON.stringify(key)},"v":${json}}\n`);
    if (json === 'null') this.entries.delete(key);
    else this.entries.set(key, json);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        if (!this.closed) this.flush();
      });
    }
  }

  /** Whether changes are staged but not yet on disk. */
  get unflushed(): boolean {
    return this.pending.length > 0;
  }

  /** Writes every staged change in one write and syncs it; returns once they are on disk. */
  flush(): void {
    if (this.pending.length === 0) return;
    const text = this.pending.length === 1 ? (this.pending[0] as string) : this.pending.join('');
    // Kept staged until written and synced: a failed write is tried again by the next flush.
    this.bytes += writeSync(this.fd, text);
    fsyncSync(this.fd);
    this.pending = [];
    this.flushes++;
    if (this.bytes > this.compactAt) this.compact();
  }

  delete(key: string): void {
    if (this.entries.has(key)) this.put(key, null);
  }

  /** A delete, on disk at the next flush (see `stage`). */
  stageDelete(key: string): void {
    if (this.entries.has(key)) this.stage(key, null);
  }

  /** Rewrites the file with only the live keys (atomic rename; the directory is synced too). */
  compact(): void {
    const tmp = `${this.path}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    let bytes = 0;
    // A few large writes, not one per key: an edge's journal holds thousands of keys.
    let chunk: string[] = [];
    let chunkChars = 0;
    for (const [k, json] of this.entries) {
      const line = `{"k":${JSON.stringify(k)},"v":${json}}\n`;
      chunk.push(line);
      chunkChars += line.length;
      if (chunkChars >= 256 * 1024) {
        bytes += writeSync(fd, chunk.join(''));
        chunk = [];
        chunkChars = 0;
      }
    }
    if (chunk.length > 0) bytes += writeSync(fd, chunk.join(''));
    fsyncSync(fd);
    // Everything staged is in the new file (the live keys hold it).
    this.pending = [];
    closeSync(fd);
    renameSync(tmp, this.path);
    const dir = openSync(join(this.path, '..'), 'r');
    fsyncSync(dir);
    closeSync(dir);
    closeSync(this.fd);
    this.fd = openSync(this.path, 'a', 0o600);
    this.bytes = bytes;
    this.compactAt = Math.max(this.maxBytes, Math.ceil(COMPACT_GROWTH * bytes));
    this.compactions++;
  }

  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    closeSync(this.fd);
  }
}
