/**
 * What EV and HCS do alike once the agreement stands: read the meter at start, poll it while
 * charging, and at the end (completion or termination, from either side) read it once the current
 * has stopped, sign the charge report and send it to the peer and the server. The report is journaled before it is
 * sent; a resumed session sends it again.
 */
import { crashPoint } from '../core/crash.js';
import type { MeteredContext } from '../core/context.js';
import { END, type SessionIn, type SessionRecord } from '../core/session.js';

/**
 * The EV's side of the cable. A real car needs no switching by the agent (the driver plugs in);
 * the simulated car's meter has one (charger kind "sim-control", drivers/simcontrol.ts): which
 * station it is plugged into, and whether it takes current. The station switches its charger
 * through its own port (charger-port.ts).
 */
async function carSwitch(agent: MeteredContext, s: SessionRecord, on: boolean, kw = 0): Promise<void> {
  if (s.role !== 'ev') return;
  await agent.metering
    .setCharging(on, kw, on ? s.hcs : undefined)
    .catch((err) => agent.log.warn({ err: (err as Error).message, on }, 'car switch failed'));
}

/** Consecutive failed meter reads that end a charge as a meter fault. */
const METER_FAULT_AFTER = 3;

/** After a restart: a charge in progress goes on (the meter kept counting); the car takes current again. */
export async function resumeCharging(
  agent: MeteredContext,
  s: SessionIn<'charging'>,
  kw: number,
): Promise<void> {
  agent.log.info({ id: s.id, txid: s.txid, startWh: s.startWh }, 'resuming a charge after restart');
  s.lastProgressAt = Date.now();
  await carSwitch(agent, s, true, kw);
}

/** After a restart: send the end of the charge and our signed report again (receivers ignore repeats). */
export async function resumeReport(agent: MeteredContext, s: SessionIn<'awaitingSettlement'>): Promise<void> {
  await announceEnd(agent, s, s.endedByPeer ?? true);
}

/**
 * Reads the start and moves the session to charging: the record as it is now (undefined if it
 * could not move). If the meter cannot be read the charge cannot be billed: the session ends before
 * it starts, and the peer and the edge are told (a termination, meter fault, resent until
 * acknowledged), rather than leaving the peer waiting or charging.
 */
export async function beginCharging(
  agent: MeteredContext,
  s: SessionIn<'awaitingMutual' | 'offered'>,
  kw: number,
): Promise<SessionIn<'charging'> | undefined> {
  let startWh: number;
  try {
    startWh = await agent.metering.energyWh();
  } catch (err) {
    agent.log.warn(
      { id: s.id, txid: s.txid, err: (err as Error).message },
      'meter unreadable at the start; session refused',
    );
    agent.move(s, 'failed', { error: 'the meter could not be read at the start', deadline: 0 });
    const end = { type: 'termination', ev: s.ev, hcs: s.hcs, txid: s.txid, status: END.meterFault } as const;
    const peer = s.role === 'ev' ? s.hcs : s.ev;
    for (const to of [peer, ...(s.server && s.server !== peer ? [s.server] : [])])
      await agent.sendReliably(to, end, s.txid, s.terms.settleBy);
    return undefined;
  }
  const charging = agent.move(s, 'charging', {
    startWh,
    meterEpoch: agent.metering.epoch,
    lastWh: startWh,
    lastProgressAt: Date.now(),
    t0: Math.floor(Date.now() / 1000),
    deadline: 0,
  });
  crashPoint('after-mutual', agent.cfg.dataDir);
  await carSwitch(agent, s, true, kw);
  return charging;
}

/**
 * One poll of a charging session. Returns the end status when the charge must end here
 * (`limitWh` reached, the meter failing, no progress for too long), else undefined. Only
 * plausible energy is ever billed (issue 12): a reading the meter's plausibility check rejects,
 * or a reset, swap or unbelievable jump since the start (a new epoch), ends the charge as a meter
 * fault at once, and the bill stays at the last plausible reading (`lastWh`).
 */
export async function pollCharging(
  agent: MeteredContext,
  s: SessionIn<'charging'>,
  limitWh: number,
  limitStatus: number,
): Promise<number | undefined> {
  let wh: number;
  try {
    wh = await agent.metering.energyWh();
  } catch (err) {
    agent.log.warn({ id: s.id, err: (err as Error).message }, 'meter read failed while charging');
    if ((err as { kind?: string }).kind === 'implausible') return END.meterFault;
    return agent.metering.consecutiveErrors >= METER_FAULT_AFTER ? END.meterFault : undefined;
  }
  if (!samePlausibleEpoch(agent, s)) {
    agent.log.warn(
      { id: s.id, wh, lastWh: s.lastWh },
      'meter reset, swapped or jumped mid-session: the charge ends here',
    );
    return END.meterFault;
  }
  crashPoint('charging', agent.cfg.dataDir);
  if (wh > (s.lastWh ?? 0)) {
    s.lastWh = wh;
    s.lastProgressAt = Date.now();
  }
  if (wh - s.startWh >= limitWh) return limitStatus;
  if (Date.now() - (s.lastProgressAt ?? Date.now()) > agent.cfg.timeouts.chargeIdleMs) return END.timeout;
  return undefined;
}

/**
 * Ends the charge: the car's side off (the station switches its charger off before it calls this,
 * charger-port.ts), final reading, signed report journaled, then sent. `fromPeer`: the peer ended
 * it (its completion/termination arrived), so we do not announce the end again.
 */
export async function endCharging(
  agent: MeteredContext,
  s: SessionIn<'charging'>,
  status: number,
  fromPeer: boolean,
): Promise<void> {
  await carSwitch(agent, s, false);
  // A reading across a reset, swap or jump of the meter is never billed; a meter gone or
  // implausible bills what was last read, never an invented reading.
  const wh = await settledReading(
    () => agent.metering.energyWh(),
    () => samePlausibleEpoch(agent, s),
  );
  const endWh = Math.max(s.lastWh ?? s.startWh, wh ?? 0);
  // Never more than the agreed cap: the contract refuses it, and the EV never agreed to pay it.
  // The raw readings stay in the report's optional data for audit.
  const energyWh = BigInt(Math.min(Math.max(0, endWh - s.startWh), s.terms.maxWh));
  const isEv = s.role === 'ev';
  // The meter's own word that nothing flowed: a good final reading equal to the start. The report
  // says so (`z`): the edge may then close the session at 0 Wh with the EV's consent.
  const nothingDelivered = wh !== undefined && wh === s.startWh && (s.lastWh ?? s.startWh) === s.startWh;
  const report = await agent.bus.sign({
    type: isEv ? 'chargeReceived' : 'chargeProvided',
    ev: s.ev,
    hcs: s.hcs,
    txid: s.txid,
    energyWh,
    optional: {
      m: agent.metering.serial,
      p: agent.metering.profile,
      s: s.startWh,
      e: endWh,
      t0: s.t0,
      t1: Math.floor(Date.now() / 1000),
      st: status,
      ...(nothingDelivered ? { z: 1 } : {}),
    },
  });
  const reported = agent.move(s, 'awaitingSettlement', {
    ...(nothingDelivered ? { nothingDelivered } : {}),
    endWh,
    t1: Math.floor(Date.now() / 1000),
    endedAt: Date.now(),
    endStatus: status,
    myReport: Buffer.from(report).toString('hex'),
    endedByPeer: fromPeer,
    deadline: Date.now() + agent.cfg.timeouts.reportMs,
  });
  crashPoint('after-report', agent.cfg.dataDir);
  if (reported) await announceEnd(agent, reported, fromPeer);
}

/** How long the current may take to stop after the switch-off, and how often the meter is read meanwhile. */
export const SETTLE = { everyMs: 100, maxMs: 1000 };

/**
 * The final reading: the first one the next, `SETTLE.everyMs` later, does not exceed. The current
 * takes a moment to stop once switched off (a contactor, a wallbox's own stop, the simulated
 * cable's tick): a reading taken at once can be short of what then flows, by more than the
 * tolerance at a fast charge, and the two sides' reports disagree (a disputed bill seen in CI).
 * Bounded: a meter that keeps counting (a peer that never switches off) still ends the charge at
 * what was read by then. Undefined when no plausible reading came (`plausible` false or a failed read).
 */
export async function settledReading(
  read: () => Promise<number>,
  plausible: () => boolean,
  settle = SETTLE,
): Promise<number | undefined> {
  const until = Date.now() + settle.maxMs;
  let last: number | undefined;
  for (;;) {
    let wh: number;
    try {
      wh = await read();
    } catch {
      return last;
    }
    if (!plausible()) return last;
    if (last !== undefined && wh <= last) return last;
    last = wh;
    if (Date.now() >= until) return last;
    await new Promise((r) => setTimeout(r, settle.everyMs));
  }
}

/** Sends the end of the charge (unless the peer ended it) to the peer, and our report to the peer and the server. */
export async function announceEnd(
  agent: MeteredContext,
  s: SessionIn<'awaitingSettlement'>,
  fromPeer: boolean,
): Promise<void> {
  const peer = s.role === 'ev' ? s.hcs : s.ev;
  const to = [peer, ...(s.server && s.server !== peer ? [s.server] : [])];
  const settleBy = s.terms.settleBy;
  // Each is resent until its receiver acknowledges it (agent/core/outbox.ts): a broker that dies
  // with them, or a peer that restarts, must not leave the other side charging or unbilled.
  if (!fromPeer) {
    const status = s.endStatus ?? END.completed;
    const end =
      status === END.completed
        ? ({ type: 'completion', ev: s.ev, hcs: s.hcs, txid: s.txid } as const)
        : ({ type: 'termination', ev: s.ev, hcs: s.hcs, txid: s.txid, status } as const);
    const envelope = await agent.bus.sign(end);
    // To the peer only: the edge learns the end from our report, sent right behind it and
    // carrying the status (`st`); a copy for it cost a message, its check and its ack a session.
    await agent.sendEnvelopeReliably(peer, envelope, end.type, s.txid, settleBy);
  }
  const report = Buffer.from(s.myReport, 'hex');
  const type = s.role === 'ev' ? 'chargeReceived' : 'chargeProvided';
  for (const dest of to) await agent.sendEnvelopeReliably(dest, report, type, s.txid, settleBy);
}

/** Whether the meter is still in the epoch the session started in (no reset, swap or jump since). */
function samePlausibleEpoch(agent: MeteredContext, s: SessionIn<'charging'>): boolean {
  return s.meterEpoch === undefined || agent.metering.epoch === s.meterEpoch;
}

/**
 * Signs the EV's receipt for its cumulative energy so far: a chargeReceived marked interim by `i`
 * (its index; 0 is the consent at 0 Wh that reserves the session). docs/PROTOCOL.md.
 */
export async function signReceipt(
  agent: MeteredContext,
  s: SessionIn<'awaitingMutual' | 'charging'>,
  energyWh: number,
  index: number,
): Promise<Uint8Array> {
  return agent.bus.sign({
    type: 'chargeReceived',
    ev: s.ev,
    hcs: s.hcs,
    txid: s.txid,
    energyWh: BigInt(Math.max(0, Math.min(energyWh, s.terms.maxWh))),
    optional: { i: index },
  });
}

/** The interim index of a chargeReceived (its optional `i`), or undefined for a final report. */
export function interimIndex(optional: unknown): number | undefined {
  const i = (optional as { i?: unknown } | undefined)?.i;
  return typeof i === 'number' && Number.isInteger(i) && i >= 0 ? i : undefined;
}
