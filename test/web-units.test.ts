/**
 * The page's pure parts: a member's months, a statement as CSV, the contract's custom errors in
 * words (decoded against the real ABI), the device's bill so far.
 */
import { Interface } from 'ethers';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadArtifact } from '../contracts/build.js';
import { deviceState, PowerEstimator } from '../agent/web/device.js';
import { ERROR_SENTENCES, errorSentence, nameToWords } from '../agent/web/errors.js';
import { monthlyOf, type SessionView, type Statement, statementCsv } from '../agent/web/views.js';

const EV = '0x00000000000000000000000000000000000000e1';
const HCS = '0x00000000000000000000000000000000000000a1';

function session(
  time: string,
  billedWh: bigint,
  amountWei: bigint,
  outcome: SessionView['outcome'] = 'settled',
): SessionView {
  return {
    txid: `0x${time}`,
    ev: EV,
    hcs: HCS,
    outcome,
    block: 1,
    txHash: '0x',
    time: Date.parse(time) / 1000,
    billedWh,
    amountWei,
  };
}

describe("a member's months", () => {
  const sessions = [
    session('2026-11-30T23:59:59Z', 1000n, 300n),
    session('2026-12-01T00:00:00Z', 2000n, 600n),
    session('2026-12-15T12:00:00Z', 500n, 150n),
    session('2026-12-16T12:00:00Z', 0n, 0n, 'expired'),
  ];

  it('sums energy and money per UTC month, oldest first, expired sessions left out', () => {
    expect(monthlyOf(sessions, EV)).toEqual([
      { month: '2026-11', sessions: 1, energyWh: 1000n, paidWei: 300n, earnedWei: 0n },
      { month: '2026-12', sessions: 2, energyWh: 2500n, paidWei: 750n, earnedWei: 0n },
    ]);
    // The station's side of the same sessions: earned, not paid.
    expect(monthlyOf(sessions, HCS.toUpperCase().replace('0X', '0x'))[1]).toEqual({
      month: '2026-12',
      sessions: 2,
      energyWh: 2500n,
      paidWei: 0n,
      earnedWei: 750n,
    });
    expect(monthlyOf(sessions, '0x00000000000000000000000000000000000000ff')).toEqual([]);
  });
});

describe('a statement as CSV', () => {
  const statement: Statement = {
    member: EV,
    role: 'ev',
    fromTime: 0,
    toTime: Number.MAX_SAFE_INTEGER,
    openingWei: 0n,
    depositsWei: 10n ** 19n,
    paymentsWei: 123n,
    earningsWei: 0n,
    withdrawalsWei: 0n,
    closingWei: 10n ** 19n - 123n,
    lines: [
      {
        time: 1_764_547_200,
        block: 3,
        txHash: '0xaa',
        kind: 'deposit',
        deltaWei: 10n ** 19n,
        balanceWei: 10n ** 19n,
      },
      {
        time: 1_764_550_800,
        block: 9,
        txHash: '0xbb',
        kind: 'payment',
        deltaWei: -123n,
        balanceWei: 10n ** 19n - 123n,
        txid: '0xcc',
      },
    ],
  };

  it('has a header, the opening, each movement wei exact, and the closing, in CRLF lines', () => {
    expect(statementCsv(statement)).toBe(
      [
        'time_utc,block,tx_hash,kind,session_txid,change_wei,balance_wei,note_wei',
        '2025-12-01T00:00:00.000Z,,,opening,,,0,',
        '2025-12-01T00:00:00.000Z,3,0xaa,deposit,,10000000000000000000,10000000000000000000,',
        '2025-12-01T01:00:00.000Z,9,0xbb,payment,0xcc,-123,9999999999999999877,',
        ',,,closing,,,9999999999999999877,',
        '',
      ].join('\r\n'),
    );
  });
});

describe("the contract's errors in words", () => {
  let iface: Interface;
  beforeAll(async () => {
    iface = new Interface((await loadArtifact('Settlement')).abi);
  });

  it('decodes revert data against the ABI, with the figure an error carries', () => {
    const data = iface.encodeErrorResult('WithdrawalNotReady', [1_764_633_600n]);
    expect(errorSentence(iface, data)).toEqual({
      name: 'WithdrawalNotReady',
      sentence: 'The withdrawal notice has not passed yet: you can withdraw from 2025-12-02 00:00 UTC.',
    });
    expect(errorSentence(iface, iface.encodeErrorResult('AlreadyRated', []))?.sentence).toBe(
      'You have rated this session already.',
    );
    // An error not in the table is still words, never hex.
    expect(errorSentence(iface, iface.encodeErrorResult('MalformedBatch', []))?.sentence).toBe(
      'Malformed batch.',
    );
    expect(errorSentence(iface, '0xdeadbeef')).toBeUndefined();
  });

  it("has a sentence for every error a member's own action can meet, and only errors of the ABI", () => {
    const names = new Set<string>();
    iface.forEachError((e) => {
      names.add(e.name);
    });
    for (const name of Object.keys(ERROR_SENTENCES)) expect(names, name).toContain(name);
    for (const name of [
      'ZeroAmount',
      'AmountExceedsDeposit',
      'NothingToWithdraw',
      'WithdrawalNotReady',
      'NotAnEv',
      'AlreadyRegistered',
      'AlreadyRated',
    ])
      expect(ERROR_SENTENCES[name], name).toBeDefined();
    expect(nameToWords('EvNotVerified')).toBe('Ev not verified.');
  });
});

describe("the device's tile", () => {
  it('shows the bill so far at the agreed price, never above the cap, and the meter register power first', () => {
    const record = {
      id: 's1',
      state: 'charging',
      role: 'ev',
      ev: EV,
      hcs: HCS,
      targetWh: 5000,
      startWh: 1000,
      lastWh: 3500,
      t0: Date.now() / 1000 - 60,
      updatedAt: Date.now(),
      terms: { price: '300000000000000', maxWh: 2000, settleBy: 1_800_000_000 },
    };
    const d = deviceState(
      { name: 'EV1', role: 'ev', address: EV, meter: { lastWh: 3500, lastReadAt: Date.now() } },
      [record],
      new PowerEstimator(),
      10_890,
    );
    expect(d.session?.energyWh).toBe(2500);
    // 2500 Wh metered, the cap is 2000: the bill is the cap's (2 kWh × 0.0003 ETH).
    expect(d.session?.predictedWei).toBe('600000000000000');
    expect(d.session?.terms).toEqual({
      priceWeiPerKWh: '300000000000000',
      maxEnergyWh: 2000,
      settleBy: 1_800_000_000,
    });
    expect(d.meter?.powerW).toBe(10_890);
    expect(d.session?.receipt).toBeUndefined();
    expect(d.session?.reserved).toBeUndefined();
    // With the payment assurance's fields: the reservation and the newest signed receipt.
    const assured = deviceState(
      { name: 'EV1', role: 'ev', address: EV },
      [
        {
          ...record,
          receiptIndex: 3,
          receiptWh: 1500,
          receiptAt: 1_800_000_000_000,
        },
      ],
      new PowerEstimator(),
    );
    expect(assured.session?.reserved).toBe(true);
    expect(assured.session?.receipt).toEqual({ index: 3, wh: 1500, at: 1_800_000_000_000 });
    // The EV's consent given, nothing metered yet: not reserved yet; the station's own word wins.
    const waiting = deviceState(
      { name: 'EV1', role: 'ev', address: EV },
      [{ ...record, receiptIndex: 0, receiptWh: 0, lastWh: 1000 }],
      new PowerEstimator(),
    );
    expect(waiting.session?.reserved).toBe(false);
    const station = deviceState(
      { name: 'HCS1', role: 'hcs', address: HCS },
      [{ ...record, role: 'hcs', reserved: true, ackWh: 900, lastAckAt: 5 }],
      new PowerEstimator(),
    );
    expect(station.session?.reserved).toBe(true);
    expect(station.session?.receipt).toEqual({ wh: 900, at: 5 });
  });
});

describe('the power estimate from two energy readings', () => {
  it('is the energy over the time between them, and nothing after a meter reset', () => {
    const power = new PowerEstimator();
    expect(power.estimate('m', 1000, 1_000_000)).toBeUndefined();
    expect(power.estimate('m', 1010, 1_003_600)).toBe(10_000);
    // The same reading again: the same figure.
    expect(power.estimate('m', 1010, 1_003_600)).toBe(10_000);
    // The register restarted at 0: no figure (the bench once showed −2271 W).
    expect(power.estimate('m', 3, 1_007_200)).toBeUndefined();
    expect(power.estimate('m', 4, 1_010_800)).toBe(1000);
  });
});

describe("the page's HTML and files", () => {
  it('carries the control token only where the control port serves it, and the libraries from their packages', async () => {
    const { Interface: Iface } = await import('ethers');
    const { createWebApp, serveWeb, portOf } = await import('../agent/web/server.js');
    const indexer = {
      address: '0x0000000000000000000000000000000000000001',
      iface: new Iface([]),
      start: async () => {},
      stop: () => {},
    } as unknown as import('../agent/web/indexer.js').ChainIndexer;
    const web = createWebApp({ indexer, tiles: 'none' });
    // The public page (web.port, p2pev web): no token.
    const open = await serveWeb(web.handle, '127.0.0.1', 0);
    // The same page as the control port serves it: the token in its meta tag.
    const control = await serveWeb((req, res) => web.handle(req, res, { token: 'f00d' }), '127.0.0.1', 0);
    try {
      const html = async (server: typeof open) => (await fetch(`http://127.0.0.1:${portOf(server)}/`)).text();
      expect(await html(open)).toContain('<meta name="p2pev-control" content="">');
      expect(await html(control)).toContain('<meta name="p2pev-control" content="f00d">');
      const res = await fetch(`http://127.0.0.1:${portOf(open)}/vendor/leaflet.js`);
      expect(res.status).toBe(200);
      expect(await res.text()).toMatch(/Leaflet/);
      // No tiles: the CSP admits images from this origin only.
      expect(res.headers.get('content-security-policy')).toMatch(/img-src 'self' data:;/);
      expect((await fetch(`http://127.0.0.1:${portOf(open)}/../package.json`)).status).toBe(404);
    } finally {
      open.close();
      control.close();
      web.close();
    }
  });
});

describe("the page index's rows as JSON lines", () => {
  it('read back every value as written: bigints, and free text that looks like one or like the escape', async () => {
    const { toLine, fromLine } = await import('../agent/web/rows.js');
    const value = {
      amountWei: 123_000_000_000_000_000_000n,
      delta: -5n,
      comment: '5n',
      other: '~x',
      tilde: '~',
      plain: 'fast',
      address: '0x00000000000000000000000000000000000000a1',
      nested: [{ wh: 0n, text: '-12n' }],
    };
    const line = toLine(value);
    expect(line.endsWith('\n')).toBe(true);
    expect(line.trimEnd()).not.toContain('\n');
    expect(fromLine(line)).toEqual(value);
  });
});
