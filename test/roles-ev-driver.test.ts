/**
 * What the driver decides from the EV's page, in-process through the car's narrow context
 * (test/fakes/context.ts): a station picked on the map, the agreed terms accepted before anything
 * is signed (or declined, or left to lapse), a stop before the charger is on.
 */
import { describe, expect, it } from 'vitest';
import type { MeteringPort } from '../agent/core/context.js';
import { termsFromJson } from '../agent/core/session.js';
import { EvRole } from '../agent/roles/ev.js';
import { computeTxId, REQUEST_STATUS } from '../protocol/index.js';
import { DOMAIN, fakeMeteredContext, incoming, party } from './fakes/context.js';

const PRICE = 300_000_000_000_000n;
const stations = [party(), party()];

async function car(body: Record<string, unknown>) {
  const edge = party();
  const switched: boolean[] = [];
  const metering: MeteringPort = {
    serial: 'EV-1',
    epoch: 0,
    profile: 'sdm120',
    consecutiveErrors: 0,
    energyWh: async () => 1_000,
    setCharging: async (on) => {
      switched.push(on);
    },
  };
  const fake = fakeMeteredContext('ev', metering, { server: edge.address });
  // What the car publishes as signed envelopes: its consent (receipt 0) among them.
  const published: string[] = [];
  Object.assign(fake.ctx.bus, {
    publishEnvelope: async (_to: string, _envelope: Uint8Array, kind: string) => {
      published.push(kind);
    },
  });
  const role = new EvRole(fake.ctx);
  const { id } = (await role.control('charge', { targetWh: 5000, ...body })) as { id: string };
  const session = () => fake.sessions.get(id);
  const me = fake.me.address;
  const suggest = (hcs: string[]) =>
    role.onMessage(
      incoming(edge, {
        type: 'suggestion',
        server: edge.address,
        requester: me,
        stations: hcs.map((address, i) => ({
          hcs: address,
          distanceM: 100 * (i + 1),
          meanRating: 450,
          priceWeiPerKWh: PRICE,
        })),
      }),
    );
  /** The station offers its terms and the edge sends the agreement. */
  const agree = async (hcs: ReturnType<typeof party>) => {
    const terms = { seq: '7', price: PRICE.toString(), maxWh: 7000, settleBy: 2_000_000_000 };
    await role.onMessage(
      incoming(hcs, {
        type: 'response',
        status: REQUEST_STATUS.accept,
        sender: hcs.address,
        receiver: me,
        optional: terms,
      }),
    );
    const txid = computeTxId(termsFromJson(me, hcs.address, terms), DOMAIN);
    await role.onMessage(
      incoming(edge, { type: 'mutual', server: edge.address, ev: me, hcs: hcs.address, txid }),
    );
  };
  return { fake, role, session, suggest, agree, switched, published };
}

const [first, second] = stations as [ReturnType<typeof party>, ReturnType<typeof party>];

describe('the driver, from the EV’s page', () => {
  it('asks the station picked on the map first, and fails when the edge does not offer it', async () => {
    const picked = await car({ hcs: second.address });
    await picked.suggest([first.address, second.address]);
    expect(picked.fake.sent.at(-1)?.to).toBe(second.address);
    expect(picked.session()?.state).toBe('requesting');

    const busy = await car({ hcs: second.address });
    await busy.suggest([first.address]);
    expect(busy.session()).toMatchObject({ state: 'failed' });
    expect(busy.session()?.error).toMatch(/the station you picked is busy or outside the search radius/);
    await expect(car({ hcs: 'not an address' })).rejects.toThrow(/hcs must be a station address/);
  });

  it('with confirm, signs nothing on the agreement until the driver accepts', async () => {
    const c = await car({ confirm: true });
    await c.suggest([first.address]);
    await c.agree(first);
    expect(c.session()).toMatchObject({ state: 'awaitingMutual', confirmTerms: true });
    expect(c.session()?.agreedAt).toBeGreaterThan(0);
    expect(c.session()?.receiptIndex).toBeUndefined();
    expect(c.published).toEqual([]);
    expect(c.switched).toEqual([]);

    await c.role.control('accept', {});
    expect(c.session()).toMatchObject({ state: 'charging', receiptIndex: 0 });
    expect(c.published).toEqual(['chargeReceived', 'chargeReceived']); // to the station and the edge
    expect(c.switched).toEqual([true]);
    await expect(c.role.control('accept', {})).rejects.toThrow(/no agreed terms wait/);
  });

  it('without confirm, consents and charges on the agreement at once', async () => {
    const c = await car({});
    await c.suggest([first.address]);
    await c.agree(first);
    expect(c.session()?.state).toBe('charging');
    expect(c.published.length).toBe(2);
  });

  it('declines with a stop before the charger is on, and lets unaccepted terms lapse', async () => {
    const declined = await car({ confirm: true });
    await declined.suggest([first.address]);
    await declined.agree(first);
    await declined.role.control('stop', {});
    expect(declined.session()).toMatchObject({
      state: 'failed',
      error: 'stopped by the driver before charging',
    });
    expect(declined.published).toEqual([]);

    const searching = await car({});
    await searching.role.control('stop', {});
    expect(searching.session()?.state).toBe('failed');

    const lapsed = await car({ confirm: true });
    await lapsed.suggest([first.address]);
    await lapsed.agree(first);
    const s = lapsed.session();
    if (!s) throw new Error('no session');
    s.deadline = Date.now() - 1;
    await lapsed.role.tick();
    expect(lapsed.session()).toMatchObject({ state: 'failed', error: 'the terms were not accepted in time' });
    expect(lapsed.published).toEqual([]);
    expect(lapsed.fake.sent.filter((m) => m.msg.type === 'request').length).toBe(1); // no next station asked
  });
});
