/**
 * Which profile a device answering on the bus matches: each profile's registers are read and the
 * profile scores a point for every value that decodes to something a meter could show (energy
 * must; voltage near mains, frequency near 50/60 Hz …). Register maps shared by several models
 * (SDM630 and SDM72D-M-2) tie; all of them are listed.
 */
import { ModbusMeter } from '../meter.js';
import { PROFILES } from '../profiles.js';
import type { MeterProfile, Quantity, RegisterSpec, Transport } from '../types.js';

const PLAUSIBLE: Record<Quantity, (v: number) => boolean> = {
  energy: (v) => v >= 0 && v < 1e12,
  power: (v) => Math.abs(v) < 2e6,
  voltage: (v) => v === 0 || (v > 80 && v < 300),
  current: (v) => v >= 0 && v < 2000,
  frequency: (v) => v === 0 || (v > 44 && v < 66),
};

export interface ProfileMatch {
  profile: string;
  score: number;
  serial?: string;
}

/** A meter object for raw access (probe, dump) that needs no particular profile. */
export function rawMeter(transport: Transport, unitId: number, timeoutMs: number, retries = 0): ModbusMeter {
  return new ModbusMeter({ profile: 'sdm630', unitId, transport, timeoutMs, retries });
}

export async function identify(
  transport: Transport,
  unitId: number,
  timeoutMs: number,
): Promise<ProfileMatch[]> {
  const matches: ProfileMatch[] = [];
  for (const profile of Object.values(PROFILES) as MeterProfile[]) {
    const meter = new ModbusMeter({ profile: profile.name, unitId, transport, timeoutMs, retries: 0 });
    await meter.open();
    try {
      const energy = await meter.readValue('energy', profile.quantities.energy).catch(() => undefined);
      if (energy === undefined || !PLAUSIBLE.energy(energy)) continue;
      let score = 1;
      for (const [q, spec] of Object.entries(profile.quantities) as [Quantity, RegisterSpec | undefined][]) {
        if (q === 'energy' || !spec) continue;
        const v = await meter.readValue(q, spec).catch(() => undefined);
        if (v !== undefined && PLAUSIBLE[q](v)) score++;
      }
      const id = await meter.identity().catch(() => undefined);
      if (id?.serial) score++;
      matches.push({ profile: profile.name, score, ...(id?.serial ? { serial: id.serial } : {}) });
    } finally {
      await meter.close();
    }
  }
  const best = Math.max(0, ...matches.map((m) => m.score));
  return matches.filter((m) => m.score === best);
}
