/**
 * `npm run bench:flood` — the edge on Debian's mosquitto under a flood (sim/flood.ts: garbage,
 * strangers, a member's valid spam, replays) at BENCH_FLOOD_RATE messages/s (default 10,000) for
 * BENCH_FLOOD_S seconds (default 30), while an EV charges at a station again and again. Every agent
 * is its own `p2pev run`. First BENCH_SESSIONS (default 5) sessions without a flood, for the
 * unloaded figure; then the same during the flood. Reports the honest sessions' p95 plug-out →
 * settled unloaded and loaded, how many did not settle, the edge's peak RSS and its drops by reason.
 * Last line: one JSON object. Figures only: nothing here asserts.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseEther } from 'ethers';
import type { SessionRecord } from '../agent/core/session.js';
import { type AgentProcess, control, spawnAgent, waitReady } from '../sim/agents.js';
import { startMosquitto } from '../sim/broker.js';
import { anvilAccounts } from '../sim/chain.js';
import { flood } from '../sim/flood.js';
import { buildWorld, type Device } from '../sim/world.js';

const rate = Number(process.env.BENCH_FLOOD_RATE ?? 10_000);
const seconds = Number(process.env.BENCH_FLOOD_S ?? 30);
const unloadedSessions = Number(process.env.BENCH_SESSIONS ?? 5);

const peakRssMb = (pid: number) =>
  Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;
const p95 = (xs: number[]) =>
  xs.length
    ? [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(0.95 * xs.length))]!
    : Number.NaN;

const broker = await startMosquitto();
const world = await buildWorld({
  dir: mkdtempSync(join(tmpdir(), 'p2pev-flood-')),
  stations: [
    {
      name: 'HCS1',
      latitude: 52.52,
      longitude: 13.405,
      priceWeiPerKWh: parseEther('0.0003'),
      powerKw: 11,
      profile: 'sdm630',
    },
  ],
  evs: [
    { name: 'EV1', latitude: 52.521, longitude: 13.41, profile: 'sdm120' },
    { name: 'SPAM', latitude: 52.6, longitude: 13.5, profile: 'sdm120' },
  ],
  edge: true,
  broker: broker.url,
  timeScale: 200,
});
const dev = (name: string) => world.devices.find((d) => d.name === name)! as Device;
const agents: AgentProcess[] = [];
try {
  for (const name of ['EDGE', 'HCS1', 'EV1']) {
    const a = await spawnAgent(dev(name), () => {});
    await waitReady(a);
    agents.push(a);
  }
  const ev = dev('EV1');
  /** One charge; plug-out → settled in s, or undefined if it did not settle within 3 minutes. */
  const charge = async (): Promise<number | undefined> => {
    const { id } = await control<{ id: string }>(ev, 'charge', { targetWh: 1500 });
    const until = Date.now() + 180_000;
    while (Date.now() < until) {
      const s = (await control<SessionRecord[]>(ev, 'sessions')).find((x) => x.id === id);
      if (s?.state === 'done' && s.endedAt && s.settledAt) return (s.settledAt - s.endedAt) / 1000;
      if (s?.state === 'failed') return undefined;
      await new Promise((r) => setTimeout(r, 200));
    }
    return undefined;
  };
  const unloaded: number[] = [];
  for (let i = 0; i < unloadedSessions; i++) {
    const t = await charge();
    if (t !== undefined) unloaded.push(t);
  }
  const edge = dev('EDGE');
  const flooding = flood({
    brokerUrl: broker.url,
    target: edge.address,
    server: edge.address,
    domain: { chainId: BigInt(world.deployment.chainId), verifyingContract: world.deployment.address },
    memberKey: anvilAccounts(5)[4]!.privateKey,
    rate,
    durationMs: seconds * 1000,
  });
  let done = false;
  void flooding.then(() => {
    done = true;
  });
  const loaded: number[] = [];
  let lost = 0;
  while (!done) {
    const t = await charge();
    if (t === undefined) lost++;
    else loaded.push(t);
  }
  const result = await flooding;
  const status = await control<{ messages: { droppedBy: Record<string, number> } }>(edge, 'status');
  const figures = {
    rateTarget: rate,
    rateSent: Math.round(result.sent / result.seconds),
    seconds: Math.round(result.seconds),
    sent: result.sent,
    honestSettled: loaded.length,
    honestLost: lost,
    p95UnloadedS: Math.round(p95(unloaded) * 100) / 100,
    p95LoadedS: Math.round(p95(loaded) * 100) / 100,
    edgePeakRssMb: Math.round(peakRssMb(agents[0]!.child.pid!) * 10) / 10,
    dropped: status.messages.droppedBy,
  };
  process.stdout.write(
    `flood ${figures.rateSent}/s for ${figures.seconds} s: ${loaded.length} honest sessions settled, ${lost} lost; ` +
      `p95 plug-out → settled ${figures.p95UnloadedS} s unloaded, ${figures.p95LoadedS} s loaded; edge peak RSS ${figures.edgePeakRssMb} MB\n`,
  );
  process.stdout.write(`${JSON.stringify(figures)}\n`);
} finally {
  for (const a of agents) await a.stop();
  await world.close();
  await broker.close();
}
