/**
 * What EV and HCS do alike once the agreement stands: read the meter at start, poll it while
 * charging, and at the end (completion or termination, from either side) read it once more, sign
 * the charge report and send it to the peer and the server. The report is journaled before it is
 * sent; a resumed session sends it again.
 */
import { crashPoint } from '../core/crash.js';
import { big } from '../core/journal.js';
import type { Agent } from '../core/runtime.js';
import { END, type SessionRecord } from '../core/session.js';

/** The EV plugs into the session's station; the station plugs into nothing. */
const plugOf = (s: SessionRecord) => (s.role === 'ev' ? s.hcs : undefined);

/** Consecutive failed meter reads that end a charge as a meter fault. */
const METER_FAULT_AFTER = 3;

/** After a restart: a charge in progress goes on (the meter kept counting); switch the charger back on. */
export async function resumeCharging(agent: Agent, s: SessionRecord, kw: number): Promise<void> {
  agent.log.info({ id: s.id, txid: s.txid, startWh: s.startWh }, 'resuming a charge after restart');
  s.lastProgressAt = Date.now();
  await agent
    .metering!.setCharging(true, kw, plugOf(s))
    .catch((err) => agent.log.warn({ err: (err as Error).message }, 'charger switch-on failed'));
}

/** After a restart: send the end of the charge and our signed report again (receivers ignore repeats). */
export async function resumeReport(agent: Agent, s: SessionRecord): Promise<void> {
  if (s.myReport) await announceEnd(agent, s, s.endedByPeer ?? true);
}

export async function beginCharging(agent: Agent, s: SessionRecord, kw: number): Promise<void> {
  const startWh = await agent.metering!.energyWh();
  agent.move(s, 'charging', {
    startWh,
    lastWh: startWh,
    lastProgressAt: Date.now(),
    t0: Math.floor(Date.now() / 1000),
    deadline: 0,
  });
  crashPoint('after-mutual', agent.cfg.dataDir);
  await agent.metering!.setCharging(true, kw, plugOf(s));
}

/**
 * One poll of a charging session. Returns the end status when the charge must end here
 * (`limitWh` reached, the meter failing, no progress for too long), else undefined.
 */
export async function pollCharging(
  agent: Agent,
  s: SessionRecord,
  limitWh: number,
  limitStatus: number,
): Promise<number | undefined> {
  let wh: number;
  try {
    wh = await agent.metering!.energyWh();
  } catch (err) {
    agent.log.warn({ id: s.id, err: (err as Error).message }, 'meter read failed while charging');
    return agent.metering!.consecutiveErrors >= METER_FAULT_AFTER ? END.meterFault : undefined;
  }
  crashPoint('charging', agent.cfg.dataDir);
  if (wh > (s.lastWh ?? 0)) {
    s.lastWh = wh;
    s.lastProgressAt = Date.now();
  }
  if (wh - s.startWh! >= limitWh) return limitStatus;
  if (Date.now() - (s.lastProgressAt ?? Date.now()) > agent.cfg.timeouts.chargeIdleMs) return END.timeout;
  return undefined;
}

/**
 * Ends the charge: charger off, final reading, signed report journaled, then sent. `fromPeer`:
 * the peer ended it (its completion/termination arrived), so we do not announce the end again.
 */
export async function endCharging(
  agent: Agent,
  s: SessionRecord,
  status: number,
  fromPeer: boolean,
): Promise<void> {
  await agent
    .metering!.setCharging(false)
    .catch((err) => agent.log.warn({ err: (err as Error).message }, 'charger switch-off failed'));
  let endWh = s.lastWh ?? s.startWh!;
  try {
    endWh = Math.max(endWh, await agent.metering!.energyWh());
  } catch {
    // The meter is gone: bill what was last read, never an invented reading.
  }
  // Never more than the agreed cap: the contract refuses it, and the EV never agreed to pay it.
  // The raw readings stay in the report's optional data for audit.
  const energyWh = BigInt(Math.min(Math.max(0, endWh - s.startWh!), s.terms!.maxWh));
  const isEv = s.role === 'ev';
  const report = await agent.bus.sign({
    type: isEv ? 'chargeReceived' : 'chargeProvided',
    ev: s.ev,
    hcs: s.hcs!,
    txid: s.txid!,
    energyWh,
    optional: {
      m: agent.metering!.serial,
      p: agent.metering!.profile,
      s: s.startWh!,
      e: endWh,
      t0: s.t0!,
      t1: Math.floor(Date.now() / 1000),
      st: status,
    },
  });
  agent.move(s, 'awaitingSettlement', {
    endWh,
    t1: Math.floor(Date.now() / 1000),
    endedAt: Date.now(),
    endStatus: status,
    myReport: Buffer.from(report).toString('hex'),
    endedByPeer: fromPeer,
    deadline: Date.now() + agent.cfg.timeouts.reportMs,
  });
  crashPoint('after-report', agent.cfg.dataDir);
  await announceEnd(agent, s, fromPeer);
}

/** Sends the end of the charge (unless the peer ended it) and our report, to the peer and the server. */
export async function announceEnd(agent: Agent, s: SessionRecord, fromPeer: boolean): Promise<void> {
  const peer = s.role === 'ev' ? s.hcs! : s.ev;
  const to = [peer, ...(s.server && s.server !== peer ? [s.server] : [])];
  if (!fromPeer) {
    const status = s.endStatus ?? END.completed;
    await agent.send(
      to,
      status === END.completed
        ? { type: 'completion', ev: s.ev, hcs: s.hcs!, txid: s.txid! }
        : { type: 'termination', ev: s.ev, hcs: s.hcs!, txid: s.txid!, status },
    );
  }
  const report = Buffer.from(s.myReport!, 'hex');
  for (const dest of to)
    await agent.bus
      .publishEnvelope(dest, report, s.role === 'ev' ? 'chargeReceived' : 'chargeProvided')
      .catch(() => {});
}

/** Energy in a report envelope (hex), from its fixed part (bytes 73..92). */
export function reportEnergyWh(envelopeHex: string): bigint {
  return big(`0x${envelopeHex.slice(73 * 2, 93 * 2)}`);
}
