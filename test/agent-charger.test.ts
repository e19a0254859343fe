/**
 * The HCS and its charger, end to end: real agents (`p2pev run`, each its own process), a station
 * behind a simulated OCPP 1.6J wallbox and one behind a simulated Modbus wallbox, real chain and
 * broker. A full paid session per charger kind, and the faults: the wallbox disconnects
 * mid-charge, rejects RemoteStart, reports Faulted, the cable is pulled mid-charge, the agent is
 * killed (SIGKILL) mid-charge.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SessionRecord } from '../agent/core/session.js';
import { END } from '../agent/core/session.js';
import { billWei } from '../protocol/index.js';
import { type AgentProcess, control, spawnAgent, waitReady } from '../sim/agents.js';
import type { Device, World } from '../sim/world.js';
import { device, PRICE, smallWorld, waitFor } from './helpers/world.js';

const quiet = (line: { msg: string; level: number }, d: { name: string }) => {
  if (process.env.P2PEV_TEST_LOG) console.log(d.name, JSON.stringify(line).slice(0, 300));
};

function chargerWorld(kind: 'ocpp' | 'modbus', modbusProfile?: string) {
  let world: World;
  const running = new Map<string, AgentProcess>();
  const start = async (d: Device) => {
    const a = await spawnAgent(d, quiet);
    running.set(d.name, a);
    await waitReady(a);
    return a;
  };
  const sessions = (d: Device) => control<SessionRecord[]>(d, 'sessions').catch(() => [] as SessionRecord[]);
  const session = async (d: Device, match: (s: SessionRecord) => boolean) => (await sessions(d)).find(match);
  /** Starts a charge at EV1; returns the EV's session id once energy flows. */
  const charge = async (targetWh: number) => {
    const ev = device(world, 'EV1');
    const { id } = await control<{ id: string }>(ev, 'charge', { targetWh, rating: 4, comment: kind });
    return id;
  };
  /** The session's settlement entries on chain (one, once settled). */
  const settled = (txid: string) => world.operator.settledSessions(world.deployment.block, txid);
  const evDone = (id: string, timeoutMs = 90_000) =>
    waitFor(
      'the EV session to end',
      async () => {
        const s = await session(device(world, 'EV1'), (x) => x.id === id);
        return s?.state === 'done' || s?.state === 'failed' ? s : undefined;
      },
      timeoutMs,
    );
  const hcsOf = (txid: string) =>
    waitFor('the HCS session to finish', async () => {
      const s = await session(device(world, 'HCS1'), (x) => x.txid === txid);
      return s && s.state !== 'charging' && s.state !== 'offered' ? s : undefined;
    });
  const delivered = async (id: string) => {
    const s = await session(device(world, 'EV1'), (x) => x.id === id);
    return { s, wh: (s?.lastWh ?? 0) - (s?.startWh ?? 0) };
  };
  return {
    get world() {
      return world;
    },
    running,
    start,
    charge,
    settled,
    evDone,
    hcsOf,
    delivered,
    session,
    async setup() {
      world = await smallWorld({
        edge: true,
        stations: [
          {
            name: 'HCS1',
            latitude: 52.52,
            longitude: 13.405,
            priceWeiPerKWh: PRICE,
            powerKw: 11,
            profile: 'sdm630',
            charger: kind,
          },
        ],
        chargerFailsafeS: 3,
        ...(modbusProfile ? { modbusProfile } : {}),
      });
      for (const d of world.devices) await start(d);
    },
    async teardown() {
      for (const a of running.values()) await a.stop();
      await world?.close();
    },
  };
}

/** A full paid session: the EV's target reached, settled once at the bill for the energy. */
async function paidSession(w: ReturnType<typeof chargerWorld>) {
  const id = await w.charge(2500);
  const s = await w.evDone(id);
  expect(s.state).toBe('done');
  const entries = await w.settled(s.txid!);
  expect(entries).toHaveLength(1);
  const bill = entries[0]!;
  expect(bill.billedWh).toBeGreaterThanOrEqual(2500n);
  expect(bill.amountWei).toBe(billWei(bill.billedWh, PRICE));
  expect(bill.disputed).toBe(false);
  return { id, txid: s.txid!, hcs: await w.hcsOf(s.txid!) };
}

describe('HCS behind a simulated OCPP 1.6J wallbox', () => {
  const w = chargerWorld('ocpp');
  const cp = () => device(w.world, 'HCS1').chargePoint!;
  beforeAll(() => w.setup(), 180_000);
  afterAll(() => w.teardown());

  it('a full paid session: RemoteStart with the session as idTag, OCMF kept with the session, switched off at the end', async () => {
    const { hcs } = await paidSession(w);
    expect(hcs.chargerSigned?.length).toBeGreaterThanOrEqual(2);
    expect(hcs.chargerSigned![0]).toMatch(/^OCMF\|/);
    expect(cp().tx).toBeUndefined();
    const status = await control<{ charger: { kind: string; connected: boolean } }>(
      device(w.world, 'HCS1'),
      'status',
    );
    expect(status.charger).toMatchObject({ kind: 'ocpp', connected: true });
  }, 120_000);

  it('the cable is pulled mid-charge: the charger sees the plug-out, a termination by the EV, billed once', async () => {
    const id = await w.charge(20_000);
    await waitFor('some energy', async () => (await w.delivered(id)).wh >= 1000, 60_000);
    // The car's side of the cable goes: the EV agent is not told, only the wallbox sees it.
    device(w.world, 'EV1').meter!.model.writeRegister(0x7f00, 0);
    const s = await w.evDone(id);
    const hcs = await w.hcsOf(s.txid!);
    expect(hcs.endStatus).toBe(END.stoppedByEv);
    expect(await w.settled(s.txid!)).toHaveLength(1);
  }, 120_000);

  it('the wallbox reports Faulted mid-charge: the HCS ends the charge, the energy so far is billed once', async () => {
    const id = await w.charge(20_000);
    await waitFor('some energy', async () => (await w.delivered(id)).wh >= 1000, 60_000);
    await cp().setFaulted(true);
    try {
      const s = await w.evDone(id);
      const hcs = await w.hcsOf(s.txid!);
      expect(hcs.endStatus).toBe(END.stoppedByHcs);
      expect(await w.settled(s.txid!)).toHaveLength(1);
    } finally {
      await cp().setFaulted(false);
    }
  }, 120_000);

  it('the wallbox ends the transaction by itself (a local stop, car still plugged in): the HCS ends the session, billed once', async () => {
    const id = await w.charge(20_000);
    await waitFor('some energy', async () => (await w.delivered(id)).wh >= 1000, 60_000);
    await cp().stopLocally();
    const s = await w.evDone(id);
    const hcs = await w.hcsOf(s.txid!);
    expect(hcs.endStatus).toBe(END.stoppedByHcs);
    expect(await w.settled(s.txid!)).toHaveLength(1);
  }, 120_000);

  it('the wallbox rejects RemoteStart: the session ends at once, nothing flows, nothing is billed', async () => {
    cp().rejectRemoteStart = true;
    try {
      const id = await w.charge(5_000);
      const s = await w.evDone(id);
      const hcs = await w.hcsOf(s.txid!);
      expect(hcs.endStatus).toBe(END.stoppedByHcs);
      expect(hcs.endWh! - hcs.startWh!).toBe(0);
      const events = await w.settled(s.txid!);
      for (const e of events) expect(e.billedWh).toBe(0n);
    } finally {
      cp().rejectRemoteStart = false;
    }
  }, 120_000);

  it('the wallbox disconnects mid-charge and comes back: the session goes on and settles once', async () => {
    const id = await w.charge(6_000);
    await waitFor('some energy', async () => (await w.delivered(id)).wh >= 1000, 60_000);
    await cp().disconnect();
    const during = await w.session(device(w.world, 'EV1'), (x) => x.id === id);
    expect(during?.state).toBe('charging');
    await cp().reconnect();
    const s = await w.evDone(id);
    expect(s.state).toBe('done');
    expect(s.endStatus).toBe(END.completed);
    expect(await w.settled(s.txid!)).toHaveLength(1);
  }, 120_000);

  it('the agent is killed mid-charge (SIGKILL): on restart it adopts the running transaction, finishes and settles once', async () => {
    const id = await w.charge(6_000);
    await waitFor('some energy', async () => (await w.delivered(id)).wh >= 1000, 60_000);
    const hcsDevice = device(w.world, 'HCS1');
    const victim = w.running.get('HCS1')!;
    victim.child.kill('SIGKILL');
    await victim.exited;
    const txBefore = cp().tx?.id;
    expect(txBefore).toBeDefined();
    await w.start(hcsDevice);
    const s = await w.evDone(id);
    expect(s.state).toBe('done');
    expect(await w.settled(s.txid!)).toHaveLength(1);
    expect(cp().tx).toBeUndefined();
  }, 150_000);

  it('killed mid-charge and the car leaves meanwhile: after restart no power stays on', async () => {
    const id = await w.charge(20_000);
    await waitFor('some energy', async () => (await w.delivered(id)).wh >= 1000, 60_000);
    const victim = w.running.get('HCS1')!;
    victim.child.kill('SIGKILL');
    await victim.exited;
    device(w.world, 'EV1').meter!.model.writeRegister(0x7f00, 0);
    await w.start(device(w.world, 'HCS1'));
    const s = await w.evDone(id);
    const hcs = await w.hcsOf(s.txid!);
    expect(hcs.state === 'awaitingSettlement' || hcs.state === 'done').toBe(true);
    expect(cp().tx).toBeUndefined();
    expect(cp().offeringKw).toBe(0);
  }, 150_000);
});

describe('HCS behind a simulated Modbus wallbox (Heidelberg Energy Control, Modbus TCP)', () => {
  const w = chargerWorld('modbus', 'heidelberg-ec');
  const wb = () => device(w.world, 'HCS1').wallbox!.model;
  beforeAll(() => w.setup(), 180_000);
  afterAll(() => w.teardown());

  it('a full paid session, the wallbox switched off at the end', async () => {
    await paidSession(w);
    expect(wb().enabled).toBe(false);
  }, 120_000);

  it('the cable is pulled mid-charge: a termination by the EV, billed once', async () => {
    const id = await w.charge(20_000);
    await waitFor('some energy', async () => (await w.delivered(id)).wh >= 1000, 60_000);
    device(w.world, 'EV1').meter!.model.writeRegister(0x7f00, 0);
    const s = await w.evDone(id);
    const hcs = await w.hcsOf(s.txid!);
    expect(hcs.endStatus).toBe(END.stoppedByEv);
    expect(await w.settled(s.txid!)).toHaveLength(1);
    expect(wb().enabled).toBe(false);
  }, 120_000);

  it('the wallbox reports a fault mid-charge: the charge ends, billed once', async () => {
    const id = await w.charge(20_000);
    await waitFor('some energy', async () => (await w.delivered(id)).wh >= 1000, 60_000);
    wb().faulted = true;
    try {
      const s = await w.evDone(id);
      const hcs = await w.hcsOf(s.txid!);
      expect(hcs.endStatus).toBe(END.stoppedByHcs);
      expect(await w.settled(s.txid!)).toHaveLength(1);
    } finally {
      wb().faulted = false;
    }
  }, 120_000);

  it('the agent is killed mid-charge (SIGKILL): the watchdog stops the current, switched on again on restart, settles once', async () => {
    const id = await w.charge(6_000);
    await waitFor('some energy', async () => (await w.delivered(id)).wh >= 1000, 60_000);
    const victim = w.running.get('HCS1')!;
    victim.child.kill('SIGKILL');
    await victim.exited;
    // Nobody talks to the wallbox now: after its 3 s watchdog it offers 0 A.
    await waitFor('the watchdog to trip', () => wb().tripped, 20_000);
    expect(wb().offeringKw).toBe(0);
    await w.start(device(w.world, 'HCS1'));
    const s = await w.evDone(id);
    expect(s.state).toBe('done');
    expect(await w.settled(s.txid!)).toHaveLength(1);
    expect(wb().enabled).toBe(false);
  }, 150_000);
});
