/**
 * The page index's files in its data directory: one append-only file of JSON lines per member
 * (the events that name it, in chain order, each settled session with what its settling call
 * carried) and `base.json`, what the index holds in memory once the blocks are final (the
 * stations' tally, the network's totals, its newest sessions, each member file's length).
 *
 * Written without fsync: the chain is the record, these files a cache of it. Their one invariant:
 * a member file is read, and appended to, only up to the length the index records for it (in
 * memory; base.json holds the lengths as of its fold, and may lag the files: it is rewritten at
 * most every few minutes). Bytes past that length (a crash after appending, or rows folded after
 * the base.json a restart resumed from) are never read and are cut off before the next append;
 * the resumed index reads those blocks again and writes the same rows. A file shorter than
 * recorded (lost in a power cut) is `IndexDamaged`: the index starts over from the deployment,
 * as after a reorg it cannot undo.
 */
import {
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  truncateSync,
  appendFileSync,
  writeFileSync,
  openSync,
  readSync,
  closeSync,
} from 'node:fs';
import { join } from 'node:path';
import type { SettlementInput } from './calldata.js';
import type { IndexedEvent } from './indexer.js';

/** A member file's line: an event, and for a settled session what its settling call carried. */
export interface MemberRow {
  e: IndexedEvent;
  i?: SettlementInput;
}

/** A member file that is shorter than base.json says: its rows are lost, re-index. */
export class IndexDamaged extends Error {}

/**
 * bigints as `"123n"` (the journal's spelling). A string that would read back as one (a rating's
 * comment is a member's free text: "5n") or that starts with the escape `~` is written with a `~`
 * in front, so every value reads back as it was.
 */
const LOOKS_BIG = /^-?\d+n$/;
function replacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'string' && (LOOKS_BIG.test(value) || value.startsWith('~'))) return `~${value}`;
  return value;
}
function reviver(_key: string, value: unknown): unknown {
  if (typeof value !== 'string') return value;
  if (value.startsWith('~')) return value.slice(1);
  return LOOKS_BIG.test(value) ? BigInt(value.slice(0, -1)) : value;
}

export const toLine = (value: unknown): string => `${JSON.stringify(value, replacer)}\n`;
export const fromLine = <T>(line: string): T => JSON.parse(line, reviver) as T;

/** A settling call's input as the page keeps it: the terms and figures, the audit's times only. */
export function compactInput(input: SettlementInput): SettlementInput {
  const times = (a: SettlementInput['evReport']['audit']) => ({
    ...(a.t0 !== undefined ? { t0: a.t0 } : {}),
    ...(a.t1 !== undefined ? { t1: a.t1 } : {}),
  });
  return {
    ...input,
    evReport: { energyWh: input.evReport.energyWh, audit: times(input.evReport.audit) },
    hcsReport: { energyWh: input.hcsReport.energyWh, audit: times(input.hcsReport.audit) },
  };
}

export class RowFiles {
  private readonly members: string;

  constructor(readonly dir: string) {
    this.members = join(dir, 'members');
  }

  private file(member: string): string {
    if (!/^0x[0-9a-f]{40}$/.test(member)) throw new Error(`not a member address: ${member}`);
    return join(this.members, `${member}.jsonl`);
  }

  readBase<T>(): T | undefined {
    const path = join(this.dir, 'base.json');
    if (!existsSync(path)) return undefined;
    try {
      return fromLine<T>(readFileSync(path, 'utf8'));
    } catch {
      return undefined;
    }
  }

  /** Replaces base.json whole (a new file renamed over the old: never half written). */
  writeBase(base: unknown): void {
    mkdirSync(this.dir, { recursive: true });
    const tmp = join(this.dir, 'base.json.tmp');
    writeFileSync(tmp, toLine(base));
    renameSync(tmp, join(this.dir, 'base.json'));
  }

  /**
   * Appends rows to a member's file at the length recorded for it (cutting off what a crash left
   * past it); returns the new length.
   */
  append(member: string, rows: MemberRow[], recorded: number): number {
    mkdirSync(this.members, { recursive: true });
    const path = this.file(member);
    const size = existsSync(path) ? statSync(path).size : 0;
    if (size < recorded) throw new IndexDamaged(`${path} is shorter than indexed`);
    if (size > recorded) truncateSync(path, recorded);
    const text = rows.map(toLine).join('');
    appendFileSync(path, text);
    return recorded + Buffer.byteLength(text);
  }

  /** A member's rows, oldest first, up to the recorded length. */
  read(member: string, recorded: number): MemberRow[] {
    if (recorded === 0) return [];
    const path = this.file(member);
    const buf = Buffer.alloc(recorded);
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch {
      throw new IndexDamaged(`${path} is missing`);
    }
    try {
      const got = readSync(fd, buf, 0, recorded, 0);
      if (got < recorded) throw new IndexDamaged(`${path} is shorter than indexed`);
    } finally {
      closeSync(fd);
    }
    return buf
      .toString('utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => fromLine<MemberRow>(l));
  }

  /** Everything gone: the index starts over from the deployment. */
  clear(): void {
    rmSync(this.members, { recursive: true, force: true });
    rmSync(join(this.dir, 'base.json'), { force: true });
  }
}
