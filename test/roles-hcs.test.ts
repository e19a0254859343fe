/**
 * The station's side of a request, in-process through its narrow context (test/fakes/context.ts):
 * a fake meter and chain, the real journal, signing and state table. What it offers, when it
 * refuses, and that an agreement switches the charger on from the meter's reading.
 */
import { describe, expect, it } from 'vitest';
import type { MeteringPort } from '../agent/core/context.js';
import { HcsRole } from '../agent/roles/hcs.js';
import { END } from '../agent/core/session.js';
import { billWei, optionalOf, PAYMENT_STATUS, REQUEST_STATUS, reportEnergyWh } from '../protocol/index.js';
import { fakeMeteredContext, incoming, party, type Sent } from './fakes/context.js';

const PRICE = 300_000_000_000_000n;

function station(hcs: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
  const switched: { on: boolean; kw: number }[] = [];
  const meter = { wh: 40_000 };
  const metering: MeteringPort = {
    ready: async () => true,
    serial: 'FAKE-1',
    epoch: 0,
    profile: 'sdm630',
    consecutiveErrors: 0,
    energyWh: async () => meter.wh,
    setCharging: async (on, kw = 0) => {
      switched.push({ on, kw });
    },
  };
  const fake = fakeMeteredContext('hcs', metering, {
    hcs: {
      priceWeiPerKWh: PRICE.toString(),
      latitude: 52.52,
      longitude: 13.405,
      powerKw: 11,
      maxSessionWh: 50_000,
      serviceHours: '00:00-24:00',
      ...hcs,
    },
    ...extra,
  });
  return { fake, role: new HcsRole(fake.ctx), switched, meter, metering };
}

const ev = party();
const request = (to: string, optional: Record<string, unknown>) =>
  incoming(ev, { type: 'request', status: REQUEST_STATUS.none, sender: ev.address, receiver: to, optional });

function response(sent: Sent[]) {
  const r = sent.find((m) => m.msg.type === 'response')?.msg;
  if (r?.type !== 'response') throw new Error('no response sent');
  return r;
}

describe('a station answers a request', () => {
  it('offers terms capped near what the car asked for, and (no edge) switches on once the EV’s consent reserved the session', async () => {
    const { fake, role, switched } = station();
    fake.answers.lastSeq = 41n; // the chain holds seq 41 already (a lost journal): numbered above it
    await role.onMessage(request(fake.me.address, { wh: 10_000, n: 'q1' }));
    const r = response(fake.sent);
    expect(r.status).toBe(REQUEST_STATUS.accept);
    const offer = optionalOf(r);
    expect(offer).toMatchObject({ price: PRICE.toString(), maxWh: 13_000, kw: 11, n: 'q1', seq: '42' });
    // settleBy = now + 13 kWh at 11 kW (4,255 s) + the 900 s margin.
    const now = Math.floor(Date.now() / 1000);
    expect(offer.settleBy).toBeGreaterThanOrEqual(now + 4255 + 900 - 2);
    expect(offer.settleBy).toBeLessThanOrEqual(now + 4255 + 900);
    expect(fake.sent.map((m) => m.msg.type)).toEqual(['response', 'mutual']);
    const [s] = fake.sessions.values();
    expect(s?.state).toBe('offered');
    expect(switched).toEqual([]);
    // The EV's consent: its first receipt, 0 Wh, marked interim 0.
    const mutual = fake.sent.find((m) => m.msg.type === 'mutual')?.msg as { txid: string };
    await role.onMessage(
      incoming(ev, {
        type: 'chargeReceived',
        ev: ev.address,
        hcs: fake.me.address,
        txid: mutual.txid,
        energyWh: 0n,
        optional: { i: 0 },
      }),
    );
    expect(fake.answers.reserved?.map((x) => x.seq)).toEqual([42n]);
    expect(s?.state).toBe('charging');
    expect(s?.startWh).toBe(40_000);
    expect(switched).toEqual([{ on: true, kw: 11 }]);
  });

  it('with an edge, an offer no consent followed lapses, and the car and the edge are told (the edge frees the station)', async () => {
    const edge = party();
    const { fake, role, switched } = station({}, { server: edge.address });
    await role.onMessage(request(fake.me.address, { wh: 10_000, n: 'q3' }));
    const [s] = fake.sessions.values();
    if (!s?.txid) throw new Error('no session');
    await role.tick();
    expect(s.state).toBe('offered');
    expect(fake.sent.filter((m) => m.msg.type === 'termination')).toEqual([]);
    s.deadline = Date.now() - 1; // the reply window passed without the car's consent
    await role.tick();
    expect(s).toMatchObject({ state: 'failed', error: 'no mutual agreement in time' });
    const ends = fake.sent.filter((m) => m.msg.type === 'termination');
    expect(ends.map((m) => m.to).sort()).toEqual([ev.address, edge.address].sort());
    expect(ends[0]?.msg).toMatchObject({ txid: s.txid, status: END.timeout });
    expect(switched).toEqual([]);
  });

  it('with an edge, switches on only once the chain shows the session reserved', async () => {
    const edge = party();
    const { fake, role, switched } = station({}, { server: edge.address });
    await role.onMessage(request(fake.me.address, { wh: 10_000, n: 'q2' }));
    expect(response(fake.sent).status).toBe(REQUEST_STATUS.accept);
    const [s] = fake.sessions.values();
    if (!s?.txid) throw new Error('no session');
    await role.onMessage(
      incoming(ev, {
        type: 'chargeReceived',
        ev: ev.address,
        hcs: fake.me.address,
        txid: s.txid,
        energyWh: 0n,
        optional: { i: 0 },
      }),
    );
    // The consent alone, or the edge's word, is not a reservation: the chain has none yet.
    fake.answers.sessionState = 0;
    await role.tick();
    expect(s.state).toBe('offered');
    expect(switched).toEqual([]);
    fake.answers.sessionState = 1; // Reserved (the edge's batch is mined)
    await role.tick();
    expect(s.state).toBe('charging');
    expect(switched).toEqual([{ on: true, kw: 11 }]);
  });

  it('with an edge, reads the chain at once on the edge’s notice of the reservation, and switches on only on what the chain says', async () => {
    const edge = party();
    const { fake, role, switched } = station({}, { server: edge.address });
    await role.onMessage(request(fake.me.address, { wh: 10_000, n: 'q4' }));
    const [s] = fake.sessions.values();
    if (!s?.txid) throw new Error('no session');
    const fields = { ev: ev.address, hcs: fake.me.address, txid: s.txid };
    await role.onMessage(
      incoming(ev, { type: 'chargeReceived', ...fields, energyWh: 0n, optional: { i: 0 } }),
    );
    const reads: string[] = [];
    const sessionState = fake.ctx.chain.client.sessionState.bind(fake.ctx.chain.client);
    Object.assign(fake.ctx.chain.client, {
      sessionState: (...args: Parameters<typeof sessionState>) => {
        reads.push('sessionState');
        return sessionState(...args);
      },
    });
    const notice = (from: ReturnType<typeof party>) =>
      role.onMessage(
        incoming(from, {
          type: 'transaction',
          txid: s.txid!,
          sender: ev.address,
          receiver: fake.me.address,
          amountWei: 0n,
          paymentStatus: PAYMENT_STATUS.pending,
          rating: 0,
          comment: '',
        }),
      );
    // From anyone but the session's edge: nothing.
    fake.answers.sessionState = 1;
    await notice(party());
    expect(reads).toEqual([]);
    expect(s.state).toBe('offered');
    // The edge's word, but the chain has no reservation (yet): still off.
    fake.answers.sessionState = 0;
    await notice(edge);
    expect(reads).toEqual(['sessionState']);
    expect(s.state).toBe('offered');
    expect(switched).toEqual([]);
    // The chain shows it reserved: on, without waiting for a tick.
    fake.answers.sessionState = 1;
    await notice(edge);
    expect(s.state).toBe('charging');
    expect(switched).toEqual([{ on: true, kw: 11 }]);
  });

  it('keeps a bill it alone may settle when the chain node is away, and settles it when it is back', async () => {
    const { fake, role, meter } = station();
    await role.onMessage(request(fake.me.address, { wh: 10_000, n: 'q3' }));
    const [s] = fake.sessions.values();
    if (!s?.txid) throw new Error('no session');
    const fields = { ev: ev.address, hcs: fake.me.address, txid: s.txid };
    await role.onMessage(
      incoming(ev, { type: 'chargeReceived', ...fields, energyWh: 0n, optional: { i: 0 } }),
    );
    expect(s.state).toBe('charging');
    meter.wh += 3000;
    await role.onMessage(incoming(ev, { type: 'termination', ...fields, status: END.stoppedByEv }));
    expect(s.state).toBe('awaitingSettlement');
    // The settlement goes out as the EV's report arrives; the node is away (a cut, a pause).
    const sends: string[] = [];
    let away = true;
    fake.answers.sessionState = 1; // Reserved
    Object.assign(fake.ctx.chain, {
      send: async (what: string) => {
        sends.push(what);
        if (away)
          throw Object.assign(
            new Error('chain node http://127.0.0.1:1 unreachable (settle); will retry later'),
            {
              code: 'NETWORK_ERROR',
            },
          );
        return { hash: '0xfeed' };
      },
    });
    // The EV reports less than the station metered, beyond the tolerance: only the station may settle.
    await role.onMessage(incoming(ev, { type: 'chargeReceived', ...fields, energyWh: 2000n }));
    expect(sends).toEqual(['settle']);
    expect(s.state).toBe('awaitingSettlement');
    await role.tick();
    expect(s.state).toBe('awaitingSettlement');
    away = false;
    await role.tick();
    expect(sends).toEqual(['settle', 'settle', 'settle']);
    expect(s.state).toBe('done');
  });

  it('caps the offer at what the deposit covers', async () => {
    const { fake, role } = station();
    fake.answers.availableDeposit = billWei(5_000n, PRICE);
    await role.onMessage(request(fake.me.address, { wh: 10_000 }));
    expect(optionalOf(response(fake.sent)).maxWh).toBe(5_000);
  });

  it.each([
    ['closed', { serviceHours: '00:00-00:00' }, undefined],
    ['deposit', {}, 0n],
  ])('refuses (%s)', async (why, hcs, deposit) => {
    const { fake, role, switched } = station(hcs);
    if (deposit !== undefined) fake.answers.availableDeposit = deposit;
    await role.onMessage(request(fake.me.address, { wh: 10_000, n: 'q2' }));
    const r = response(fake.sent);
    expect(r.status).toBe(REQUEST_STATUS.reject);
    expect(optionalOf(r)).toEqual({ why, n: 'q2' });
    expect(fake.sessions.size).toBe(0);
    expect(switched).toEqual([]);
  });

  it('ignores a request meant for another station', async () => {
    const { fake, role } = station();
    await role.onMessage(request(party().address, { wh: 10_000 }));
    expect(fake.sent).toEqual([]);
  });
});

describe('only plausible energy is billed (issue 12)', () => {
  it('a meter reset, swap or jump mid-charge ends the charge as a meter fault at the last plausible reading', async () => {
    const { fake, role, switched, meter, metering } = station();
    await role.onMessage(request(fake.me.address, { wh: 10_000 }));
    const mutual = fake.sent.find((m) => m.msg.type === 'mutual')?.msg as { txid: string };
    await role.onMessage(
      incoming(ev, {
        type: 'chargeReceived',
        ev: ev.address,
        hcs: fake.me.address,
        txid: mutual.txid,
        energyWh: 0n,
        optional: { i: 0 },
      }),
    );
    const [s] = fake.sessions.values();
    expect(s?.state).toBe('charging');
    meter.wh = 40_300;
    await role.tick();
    expect(s?.state).toBe('charging');
    // The driver saw a discontinuity (here a jump of 20 kWh): a new epoch.
    (metering as { epoch: number }).epoch = 1;
    meter.wh = 60_300;
    await role.tick();
    expect(s?.state).toBe('awaitingSettlement');
    expect(s?.endStatus).toBe(END.meterFault);
    expect(s?.myReport && reportEnergyWh(s.myReport)).toBe(300n);
    expect(switched.at(-1)?.on).toBe(false);
  });
});

describe('a charge that delivered nothing is closed at 0 Wh at once (issue 15)', () => {
  /** A charge under way (no edge), the EV's consent its only receipt; the chain's sends recorded. */
  async function charging() {
    const st = station();
    await st.role.onMessage(request(st.fake.me.address, { wh: 10_000 }));
    const [s] = st.fake.sessions.values();
    if (!s?.txid) throw new Error('no session');
    const fields = { ev: ev.address, hcs: st.fake.me.address, txid: s.txid };
    await st.role.onMessage(
      incoming(ev, { type: 'chargeReceived', ...fields, energyWh: 0n, optional: { i: 0 } }),
    );
    expect(s.state).toBe('charging');
    const sends: string[] = [];
    st.fake.answers.sessionState = 1; // Reserved
    Object.assign(st.fake.ctx.chain, {
      send: async (what: string) => {
        sends.push(what);
        return { hash: '0xfeed' };
      },
    });
    const end = () =>
      st.role.onMessage(incoming(ev, { type: 'termination', ...fields, status: END.stoppedByEv }));
    return { ...st, s, sends, end };
  }

  it('the meter read well and shows nothing: settled with the consent at 0 Wh without waiting for the EV’s report', async () => {
    const { role, s, sends, end } = await charging();
    await end();
    expect(s).toMatchObject({ state: 'awaitingSettlement', nothingDelivered: true });
    await role.tick();
    expect(sends).toEqual(['settle']);
    expect(s.state).toBe('done');
  });

  it('reserved, but the meter unreadable at the start: the charger never on, the station says 0 Wh to the edge and settles the reservation at 0 Wh with the consent', async () => {
    const edge = party();
    const { fake, role, switched, metering } = station({}, { server: edge.address });
    await role.onMessage(request(fake.me.address, { wh: 10_000 }));
    const [s] = fake.sessions.values();
    if (!s?.txid) throw new Error('no session');
    const fields = { ev: ev.address, hcs: fake.me.address, txid: s.txid };
    await role.onMessage(
      incoming(ev, { type: 'chargeReceived', ...fields, energyWh: 0n, optional: { i: 0 } }),
    );
    const sends: string[] = [];
    Object.assign(fake.ctx.chain, {
      send: async (what: string) => {
        sends.push(what);
        return { hash: '0xfeed' };
      },
    });
    Object.assign(metering, {
      energyWh: async () => {
        throw new Error('no response from the meter');
      },
    });
    fake.answers.sessionState = 1; // Reserved (the edge's batch is mined)
    await role.tick();
    expect(s).toMatchObject({ state: 'failed', error: 'the meter could not be read at the start' });
    expect(switched).toEqual([]);
    const report = fake.sent.find((m) => m.msg.type === 'chargeProvided');
    expect(report?.to).toBe(edge.address);
    expect(report?.msg).toMatchObject({ txid: s.txid, energyWh: 0n });
    expect(sends).toEqual(['settle']);
    expect(s.closeAtZero).toBeUndefined();
  });

  it('the meter failed at the end: its 0 Wh is no proof that nothing flowed, and the bill waits as any other', async () => {
    const { role, s, sends, end, metering } = await charging();
    Object.assign(metering, {
      energyWh: async () => {
        throw new Error('no response from the meter');
      },
    });
    await end();
    expect(s.state).toBe('awaitingSettlement');
    expect(s.myReport && reportEnergyWh(s.myReport)).toBe(0n);
    expect(s.nothingDelivered).toBeUndefined();
    await role.tick();
    expect(sends).toEqual([]);
  });
});
