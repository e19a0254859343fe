/** The agent's pure logic: service hours, terms from peers, the session state table, the tolerance rule. */
import { describe, expect, it } from 'vitest';
import { canMove, OPEN_STATES, parseTerms, type SessionRecord, TRANSITIONS } from '../agent/core/session.js';
import { withinServiceHours } from '../agent/roles/hcs.js';
import { withinTolerance } from '../agent/roles/settle.js';
import { expectSessionIndexMatchesScan } from './helpers/sessions.js';

const at = (hh: number, mm = 0) => new Date(2026, 0, 15, hh, mm);

describe('withinServiceHours', () => {
  it('a daytime window includes its start and excludes its end', () => {
    expect(withinServiceHours('08:00-20:00', at(8))).toBe(true);
    expect(withinServiceHours('08:00-20:00', at(19, 59))).toBe(true);
    expect(withinServiceHours('08:00-20:00', at(20))).toBe(false);
    expect(withinServiceHours('08:00-20:00', at(7, 59))).toBe(false);
  });

  it('a window may run past midnight', () => {
    expect(withinServiceHours('22:00-06:00', at(23))).toBe(true);
    expect(withinServiceHours('22:00-06:00', at(5, 59))).toBe(true);
    expect(withinServiceHours('22:00-06:00', at(6))).toBe(false);
    expect(withinServiceHours('22:00-06:00', at(12))).toBe(false);
  });

  it('the whole day, spaces allowed, nonsense closed', () => {
    expect(withinServiceHours('00:00-24:00', at(0))).toBe(true);
    expect(withinServiceHours('00:00-24:00', at(23, 59))).toBe(true);
    expect(withinServiceHours(' 08:00 - 20:00 ', at(12))).toBe(true);
    expect(withinServiceHours('always', at(12))).toBe(false);
    expect(withinServiceHours('8-20', at(12))).toBe(false);
  });
});

describe('parseTerms (terms from a peer)', () => {
  const good = { seq: '3', price: '300000000000000', maxWh: 5000, settleBy: 1_800_000_000 };

  it('takes good terms, seq as a string or a number', () => {
    expect(parseTerms(good)).toEqual(good);
    expect(parseTerms({ ...good, seq: 3 })).toEqual(good);
  });

  it.each([
    [undefined, 'no terms'],
    ['terms', 'no terms'],
    [{ ...good, seq: undefined }, 'seq missing'],
    [{ ...good, price: 3e14 }, 'price must be a decimal string'],
    [{ ...good, price: '-1' }, 'price must be a decimal string'],
    [{ ...good, price: '0x10' }, 'price must be a decimal string'],
    [{ ...good, maxWh: 0 }, 'maxWh must be a positive integer'],
    [{ ...good, maxWh: 1.5 }, 'maxWh must be a positive integer'],
    [{ ...good, maxWh: '5000' }, 'maxWh must be a positive integer'],
    [{ ...good, settleBy: 'soon' }, 'settleBy must be unix seconds'],
  ])('refuses %j: %s', (raw, reason) => {
    const out = parseTerms(raw);
    expect(typeof out).toBe('string');
    expect(out).toContain(reason);
  });
});

describe('the session state table', () => {
  const session = (role: 'ev' | 'hcs', state: SessionRecord['state']) =>
    ({ id: 'x', role, state, deadline: 0, ev: '0x', createdAt: 0, updatedAt: 0 }) as SessionRecord;

  it('moves only along the table', () => {
    expect(canMove(session('ev', 'searching'), 'requesting')).toBe(true);
    expect(canMove(session('ev', 'searching'), 'charging')).toBe(false);
    expect(canMove(session('ev', 'charging'), 'awaitingSettlement')).toBe(true);
    expect(canMove(session('hcs', 'offered'), 'charging')).toBe(true);
    expect(canMove(session('hcs', 'offered'), 'requesting')).toBe(false);
  });

  it('finished sessions never move again; every open state can fail', () => {
    for (const role of ['ev', 'hcs'] as const) {
      for (const to of ['searching', 'charging', 'done', 'failed'] as const) {
        expect(canMove(session(role, 'done'), to)).toBe(false);
        expect(canMove(session(role, 'failed'), to)).toBe(false);
      }
      for (const from of Object.keys(TRANSITIONS[role]))
        expect(canMove(session(role, from as SessionRecord['state']), 'failed')).toBe(true);
    }
  });

  it('the open states are exactly those with a way out', () => {
    const withExits = new Set([...Object.keys(TRANSITIONS.ev), ...Object.keys(TRANSITIONS.hcs)]);
    expect(new Set(OPEN_STATES)).toEqual(withExits);
  });
});

describe('withinTolerance (the contract rule, docs/CONTRACT.md)', () => {
  it('|a − b| ≤ max(abs, rel × larger)', () => {
    // abs 10 Wh, rel 1 %
    expect(withinTolerance(1000n, 1010n, 10n, 100n)).toBe(true);
    expect(withinTolerance(1000n, 1011n, 10n, 100n)).toBe(false);
    expect(withinTolerance(100_000n, 101_000n, 10n, 100n)).toBe(true); // 1 % of 101,000 = 1,010
    expect(withinTolerance(100_000n, 101_011n, 10n, 100n)).toBe(false);
  });

  it('is symmetric', () => {
    for (const [a, b] of [
      [0n, 10n],
      [1000n, 1011n],
      [5000n, 5050n],
    ] as const)
      expect(withinTolerance(a, b, 10n, 100n)).toBe(withinTolerance(b, a, 10n, 100n));
  });
});

describe('the open sessions and the sessions gauge, kept as sessions are saved (issue 16)', () => {
  it('agree with a full scan through saves, moves, prunes and a restart', async () => {
    const { Agent } = await import('../agent/core/runtime.js');
    const { createLogger } = await import('../agent/core/log.js');
    const { tempDir } = await import('./helpers/world.js');
    const dir = tempDir('open-sessions');
    type Made = import('../agent/core/runtime.js').Agent;
    const make = () =>
      new (Agent as unknown as new (cfg: unknown, key: unknown, log: unknown) => Made)(
        { dataDir: dir, metrics: {} },
        {},
        createLogger({ level: 'silent' }),
      );
    const agrees = (a: Made) => expectSessionIndexMatchesScan(a);
    const a = make();
    // The fast ticker (the meter's pollMs) runs exactly while a session charges.
    const fast = () => (a as unknown as { fastTimer?: NodeJS.Timeout }).fastTimer !== undefined;
    (a as unknown as { fastTickMs: number }).fastTickMs = 60_000;
    const rec = (id: string, state: SessionRecord['state']) =>
      ({ id, role: 'ev', state, createdAt: 0, updatedAt: 0 }) as unknown as SessionRecord;
    for (const [id, state] of [
      ['1', 'searching'],
      ['2', 'searching'],
      ['1', 'requesting'],
      ['3', 'charging'],
      ['2', 'failed'],
      ['1', 'done'],
      ['4', 'offered'],
      ['3', 'awaitingSettlement'],
      ['3', 'done'],
    ] as const) {
      a.save({ ...(a.sessions.get(id) ?? rec(id, state)), state } as SessionRecord);
      await agrees(a);
      expect(fast()).toBe([...a.sessions.values()].some((x) => x.state === 'charging'));
    }
    expect(a.openSessions().map((x) => x.id)).toEqual(['4']);
    a.prune(1);
    expect([...a.sessions.keys()].sort()).toEqual(['3', '4']);
    await agrees(a);
    a.journal.close();
    const again = make();
    await agrees(again);
    expect(again.openSessions().map((x) => x.id)).toEqual(['4']);
    again.journal.close();
  });
});
