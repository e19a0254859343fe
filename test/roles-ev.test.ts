/**
 * The car's side of finding a station, in-process through its narrow context (test/fakes/context.ts):
 * the edge's suggestion, the station's answer, the terms it accepts or refuses, the agreement that
 * starts the charge. No chain node, no broker, no meter on a wire.
 */
import { describe, expect, it } from 'vitest';
import type { MeteringPort } from '../agent/core/context.js';
import { EvRole } from '../agent/roles/ev.js';
import { ChainSessionState } from '../contracts/client.js';
import { computeTxId, optionalOf, REQUEST_STATUS } from '../protocol/index.js';
import { DOMAIN, fakeMeteredContext, incoming, party } from './fakes/context.js';
import { termsFromJson } from '../agent/core/session.js';

const PRICE = 300_000_000_000_000n;

async function car() {
  const edge = party();
  const switched: { on: boolean; plug?: string }[] = [];
  const metering: MeteringPort = {
    ready: async () => true,
    serial: 'EV-1',
    epoch: 0,
    profile: 'sdm120',
    consecutiveErrors: 0,
    energyWh: async () => 1_000,
    setCharging: async (on, _kw, plug) => {
      switched.push({ on, ...(plug ? { plug } : {}) });
    },
  };
  const fake = fakeMeteredContext('ev', metering, { server: edge.address });
  const role = new EvRole(fake.ctx);
  const { id } = (await role.control('charge', { targetWh: 5000, rating: 5, comment: 'äöüäöüäöü' })) as {
    id: string;
  };
  const session = () => fake.sessions.get(id);
  return { fake, role, edge, switched, session };
}

const stations = [party(), party()];
const suggestion = (edge: ReturnType<typeof party>, to: string, prices: bigint[]) =>
  incoming(edge, {
    type: 'suggestion',
    server: edge.address,
    requester: to,
    stations: prices.map((p, i) => ({
      hcs: stations[i]?.address ?? '',
      distanceM: 100 * (i + 1),
      meanRating: 450,
      priceWeiPerKWh: p,
    })),
  });
const answer = (
  from: ReturnType<typeof party>,
  to: string,
  status: number,
  optional: Record<string, unknown>,
) => incoming(from, { type: 'response', status, sender: from.address, receiver: to, optional });

describe('a car finds a station', () => {
  it('searches at the edge, asks the first station, accepts its terms, and charges on the agreement', async () => {
    const { fake, role, edge, switched, session } = await car();
    const me = fake.me.address;
    expect(fake.sent[0]?.msg.type).toBe('search');
    // the rating comment is cut to its 10 UTF-8 bytes, not 10 characters
    expect(session()?.rating).toEqual({ stars: 5, comment: 'äöüäö' });

    await role.onMessage(suggestion(edge, me, [PRICE, PRICE]));
    const req = fake.sent.at(-1);
    expect(req?.to).toBe(stations[0]?.address);
    if (req?.msg.type !== 'request') throw new Error('no request');
    expect(optionalOf(req.msg).wh).toBe(5000);
    expect(session()?.state).toBe('requesting');

    const hcs = stations[0];
    if (!hcs) throw new Error('no station');
    const terms = { seq: '4', price: PRICE.toString(), maxWh: 7000, settleBy: 2_000_000_000 };
    await role.onMessage(answer(hcs, me, REQUEST_STATUS.accept, { ...terms, kw: 22 }));
    const txid = computeTxId(termsFromJson(me, hcs.address, terms), DOMAIN);
    expect(session()).toMatchObject({ state: 'awaitingMutual', txid, kw: 22, terms });

    await role.onMessage(
      incoming(edge, { type: 'mutual', server: edge.address, ev: me, hcs: hcs.address, txid }),
    );
    expect(session()).toMatchObject({ state: 'charging', startWh: 1_000 });
    expect(switched).toEqual([{ on: true, plug: hcs.address }]);
  });

  it("charges on an agreement that overtook the station's answer, only if it names the txid the answer gives", async () => {
    // The station's answer waits at the car for a member lookup; the edge's agreement does not.
    const { fake, role, edge, switched, session } = await car();
    const me = fake.me.address;
    await role.onMessage(suggestion(edge, me, [PRICE, PRICE]));
    const hcs = stations[0];
    if (!hcs) throw new Error('no station');
    const terms = { seq: '5', price: PRICE.toString(), maxWh: 7000, settleBy: 2_000_000_000 };
    const txid = computeTxId(termsFromJson(me, hcs.address, terms), DOMAIN);
    await role.onMessage(
      incoming(edge, { type: 'mutual', server: edge.address, ev: me, hcs: hcs.address, txid }),
    );
    expect(session()?.state).toBe('requesting');
    expect(switched).toEqual([]);
    await role.onMessage(answer(hcs, me, REQUEST_STATUS.accept, { ...terms, kw: 22 }));
    expect(session()).toMatchObject({ state: 'charging', txid });
    expect(switched).toEqual([{ on: true, plug: hcs.address }]);

    // An early agreement for other terms than the station then offers is not one.
    const other = await car();
    const them = other.fake.me.address;
    await other.role.onMessage(suggestion(other.edge, them, [PRICE]));
    const wrong = computeTxId(termsFromJson(them, hcs.address, { ...terms, maxWh: 9000 }), DOMAIN);
    await other.role.onMessage(
      incoming(other.edge, {
        type: 'mutual',
        server: other.edge.address,
        ev: them,
        hcs: hcs.address,
        txid: wrong,
      }),
    );
    await other.role.onMessage(answer(hcs, them, REQUEST_STATUS.accept, terms));
    expect(other.session()?.state).toBe('awaitingMutual');
    expect(other.switched).toEqual([]);
  });

  it('refuses terms above the suggested price and asks the next station', async () => {
    const { fake, role, edge, session } = await car();
    const me = fake.me.address;
    await role.onMessage(suggestion(edge, me, [PRICE, PRICE]));
    const [first, second] = stations;
    if (!first || !second) throw new Error('no stations');
    await role.onMessage(
      answer(first, me, REQUEST_STATUS.accept, {
        seq: '1',
        price: (PRICE + 1n).toString(),
        maxWh: 7000,
        settleBy: 2_000_000_000,
      }),
    );
    expect(session()?.state).toBe('requesting');
    expect(session()?.hcs).toBe(second.address);
    expect(fake.sent.at(-1)?.to).toBe(second.address);
  });

  it('ignores an agreement signed by someone else than its edge', async () => {
    const { fake, role, edge, switched, session } = await car();
    const me = fake.me.address;
    await role.onMessage(suggestion(edge, me, [PRICE]));
    const hcs = stations[0];
    if (!hcs) throw new Error('no station');
    const terms = { seq: '9', price: PRICE.toString(), maxWh: 7000, settleBy: 2_000_000_000 };
    await role.onMessage(answer(hcs, me, REQUEST_STATUS.accept, terms));
    const txid = computeTxId(termsFromJson(me, hcs.address, terms), DOMAIN);
    const stranger = party();
    await role.onMessage(
      incoming(stranger, { type: 'mutual', server: stranger.address, ev: me, hcs: hcs.address, txid }),
    );
    expect(session()?.state).toBe('awaitingMutual');
    expect(switched).toEqual([]);
  });

  it('fails when every suggested station is refused', async () => {
    const { fake, role, edge, session } = await car();
    const me = fake.me.address;
    await role.onMessage(suggestion(edge, me, [PRICE]));
    const hcs = stations[0];
    if (!hcs) throw new Error('no station');
    await role.onMessage(answer(hcs, me, REQUEST_STATUS.busy, { why: 'busy' }));
    expect(session()).toMatchObject({ state: 'failed', error: 'no station accepted' });
  });
});

describe('a session nobody settled in its window', () => {
  it('releases its reservation still standing on chain (the deposit and the station’s slot), then fails', async () => {
    const { fake, role } = await car();
    const hcs = stations[0]!.address;
    const terms = {
      seq: '5',
      price: PRICE.toString(),
      maxWh: 4000,
      settleBy: Math.floor(Date.now() / 1000) - 60,
    };
    const txid = computeTxId(termsFromJson(fake.me.address, hcs, terms), DOMAIN);
    fake.ctx.save({
      id: 'never-charged',
      role: 'ev',
      state: 'awaitingSettlement',
      deadline: 0,
      ev: fake.me.address,
      hcs,
      terms,
      txid,
      myReport: '00',
      createdAt: Date.now(),
      updatedAt: Date.now(),
    } as never);
    const sends: string[] = [];
    let away = true;
    Object.assign(fake.ctx.chain, {
      send: async (what: string) => {
        sends.push(what);
        if (away)
          throw Object.assign(new Error('chain node unreachable (release)'), { code: 'NETWORK_ERROR' });
        return {};
      },
    });
    fake.answers.sessionState = 1; // still Reserved: nobody settled, nobody released
    const s = () => fake.sessions.get('never-charged');
    // The node away: nothing given up, tried again at the next poll.
    await role.tick();
    expect(sends).toEqual(['release']);
    expect(s()?.state).toBe('awaitingSettlement');
    away = false;
    const again = new EvRole(fake.ctx); // a fresh poll (the role polls the chain every 15 s)
    await again.tick();
    expect(sends).toEqual(['release', 'release']);
    expect(s()?.state).toBe('failed');
  });
});

describe('a car with several sessions awaiting settlement', () => {
  it('asks the chain about each in turn: one that cannot settle yet does not hide the others', async () => {
    const { fake, role } = await car();
    const hcs = stations[0]!.address;
    const record = (seq: string) => {
      const terms = {
        seq,
        price: PRICE.toString(),
        maxWh: 4000,
        settleBy: Math.floor(Date.now() / 1000) + 3600,
      };
      const txid = computeTxId(termsFromJson(fake.me.address, hcs, terms), DOMAIN);
      fake.ctx.save({
        id: `s${seq}`,
        role: 'ev',
        state: 'awaitingSettlement',
        deadline: 0,
        ev: fake.me.address,
        hcs,
        server: fake.ctx.cfg.server,
        terms,
        txid,
        myReport: '00',
        createdAt: Date.now(),
        updatedAt: Date.now(),
      } as never);
    };
    record('1'); // never charged: reserved until its window closes
    record('2'); // settled by the station directly (the EV hears it from the chain only)
    const asked: bigint[] = [];
    Object.assign(fake.ctx.chain.client, {
      sessionState: async (_hcs: string, seq: bigint) => {
        asked.push(seq);
        return seq === 2n ? ChainSessionState.Settled : ChainSessionState.Reserved;
      },
    });
    await role.tick();
    // The next poll is due (the role asks the chain at most every 15 s with an edge).
    Object.assign(role, { lastChainPoll: Number.NEGATIVE_INFINITY });
    await role.tick();
    expect(asked).toEqual([1n, 2n]);
    expect(fake.sessions.get('s2')?.state).toBe('done');
    expect(fake.sessions.get('s1')?.state).toBe('awaitingSettlement');
  });
});
