/**
 * Log lines reach journald at their own priority: when stdout is journald's stream (JOURNAL_STREAM
 * names it) each JSON line starts with `<N>`, which journald turns into the entry's priority; a
 * child whose stdout is a pipe (the sim reading its agents) gets plain JSON although it inherited
 * the variable.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { priorityOf } from '../agent/core/log.js';

const dir = mkdtempSync(join(tmpdir(), 'p2pev-log-'));
const LOG = new URL('../agent/core/log.ts', import.meta.url).pathname;
const script = join(dir, 'log.mjs');
writeFileSync(
  script,
  `const { createLogger } = await import(${JSON.stringify(LOG)});
   const log = createLogger({ level: 'debug' });
   log.debug('d'); log.info('i'); log.warn('w'); log.error('e'); log.fatal('f');`,
);
const TSX = new URL('../node_modules/.bin/tsx', import.meta.url).pathname;

describe('syslog priorities for journald', () => {
  it('maps pino levels to syslog priorities', () => {
    expect(priorityOf('{"level":50,"msg":"x"}')).toBe(3);
    expect(priorityOf('{"level":40,"msg":"x"}')).toBe(4);
    expect(priorityOf('{"level":30,"msg":"x"}')).toBe(6);
    expect(priorityOf('{"level":20,"msg":"x"}')).toBe(7);
    expect(priorityOf('{"level":60,"msg":"x"}')).toBe(2);
    expect(priorityOf('not json')).toBe(6);
  });

  it('prefixes each line when stdout is the journal stream JOURNAL_STREAM names', () => {
    const file = join(dir, 'journal.out');
    const fd = openSync(file, 'w');
    const st = statSync(file);
    try {
      execFileSync(TSX, [script], {
        stdio: ['ignore', fd, 'inherit'],
        env: { ...process.env, JOURNAL_STREAM: `${st.dev}:${st.ino}`, CI: '1' },
      });
    } finally {
      closeSync(fd);
    }
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    expect(lines.map((l) => l.slice(0, 3))).toEqual(['<7>', '<6>', '<4>', '<3>', '<2>']);
    expect(JSON.parse(lines[3]!.slice(3)).msg).toBe('e');
  });

  it('writes plain JSON into a pipe even with an inherited JOURNAL_STREAM', () => {
    const r = spawnSync(TSX, [script], {
      encoding: 'utf8',
      env: { ...process.env, JOURNAL_STREAM: '8:12345', CI: '1' },
    });
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(5);
    for (const l of lines) expect(l.startsWith('{')).toBe(true);
  });
});
