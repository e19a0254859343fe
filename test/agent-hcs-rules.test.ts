/** The station's pure rules of issue 12: its window from the terms, its switch-off decision, its window check. */
import { describe, expect, it } from 'vitest';
import { END } from '../agent/core/session.js';
import { sessionWindow, switchOffDecision, windowCheck } from '../agent/roles/hcs.js';

const rules = {
  receiptWh: 500,
  receiptMs: 60_000,
  graceMs: 15_000,
  marginS: 900,
  toleranceWh: (wh: number) => Math.max(50, Math.floor((wh * 200) / 10_000)),
};
const terms = { seq: '1', price: '1', maxWh: 40_000, settleBy: 100_000 };

describe('sessionWindow', () => {
  it('settleBy = start + maxWh ÷ power + margin, the cap cut to fit the window', () => {
    // 22 kWh at 11 kW: 7,200 s of charging, 900 s of margin.
    expect(sessionWindow(1000, 22_000, 11_000, 43_200, 900)).toEqual({
      maxWh: 22_000,
      settleBy: 1000 + 7200 + 900,
    });
    // A one-hour window leaves 2,700 s of charging at 11 kW: 8,250 Wh.
    expect(sessionWindow(0, 22_000, 11_000, 3600, 900)).toEqual({ maxWh: 8250, settleBy: 2700 + 900 });
    expect(sessionWindow(0, 22_000, 11_000, 900, 900)).toBeUndefined();
  });
});

describe('switchOffDecision', () => {
  const base = {
    startWh: 1000,
    lastWh: 3000,
    ackWh: 1900,
    lastAckAt: 50_000_000,
    switchedOnAt: 49_000_000,
    terms,
  };
  it('keeps charging while receipts come in time and keep up', () => {
    expect(switchOffDecision(base, 50_010_000, rules)).toBeUndefined();
  });
  it('switches off when a receipt is late', () => {
    expect(switchOffDecision(base, 50_000_000 + 75_001, rules)).toMatchObject({ status: END.peerLost });
    expect(switchOffDecision(base, 50_000_000 + 75_000, rules)).toBeUndefined();
  });
  it('switches off when the EV’s figure falls behind by more than a receipt, the tolerance and the grace', () => {
    // 2,000 Wh delivered in 1,000 s: the grace (15 s) is worth 30 Wh; tolerance 50 Wh.
    const behind = (ackWh: number) => switchOffDecision({ ...base, ackWh }, 50_000_000, rules);
    expect(behind(2000 - 580)).toBeUndefined();
    expect(behind(2000 - 581)).toMatchObject({ status: END.stoppedByHcs });
  });
  it('switches off before settleBy minus the margin', () => {
    expect(switchOffDecision(base, (100_000 - 900) * 1000, rules)).toMatchObject({ why: /window/ });
    expect(switchOffDecision(base, (100_000 - 901) * 1000, { ...rules, receiptMs: 1e12 })).toBeUndefined();
  });
});

describe('windowCheck', () => {
  const hcs = { settlementWindowS: 43_200, settleMarginS: 900, maxSessionWh: 80_000, powerKw: 11 };
  it('passes the defaults against a one-day contract window', () => {
    expect(windowCheck(hcs, 86_400, 11_000).level).toBe('ok');
  });
  it('fails a window longer than the contract’s, one without room, and a power above the registered one', () => {
    expect(windowCheck({ ...hcs, settlementWindowS: 90_000 }, 86_400)).toMatchObject({
      level: 'fail',
      fix: /at most 86400/,
    });
    expect(windowCheck({ ...hcs, settleMarginS: 43_200 }, 86_400).level).toBe('fail');
    expect(windowCheck(hcs, 86_400, 7_400)).toMatchObject({ level: 'fail', fix: /7.4/ });
  });
  it('warns when a full session does not fit (it will be capped)', () => {
    expect(windowCheck({ ...hcs, settlementWindowS: 3600 }, 86_400)).toMatchObject({
      level: 'warn',
      detail: /8250 Wh/,
    });
  });
});
