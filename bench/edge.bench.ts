/**
 * `npm run bench:edge` — what one edge sustains alone. The edge is the real `p2pev run` (compiled,
 * as installed: P2PEV_DIST=1) in its own process; anvil and the broker (Debian's mosquitto) run
 * beside it as processes of their own; this process is the load generator: it plays every EV and
 * HCS with their keys, signs every session's messages before the clock starts, and publishes them
 * over the broker: the car's search and the station's accepted response (the terms); on the
 * edge's mutual agreement the car's consent (receipt 0, which the edge reserves on chain); after
 * BENCH_EDGE_CHARGE_MS (the charge) both signed reports. The edge answers the search, checks the
 * car's deposit on chain, sends the mutual agreement, reserves, reconciles the reports, settles
 * them on chain in batches and sends the transaction message, on which a session counts as settled.
 *
 * At most BENCH_EDGE_WINDOW sessions are in flight (a closed loop, so the edge is kept busy but not
 * buried). Figures: sessions settled per second over the run, latency from a session's last report
 * to its transaction message (p50/p95), and the edge's CPU time per session (from
 * /proc/<pid>/stat). BENCH_EDGE_PROFILE=<dir> writes the edge's CPU profile there.
 *
 * Knobs: BENCH_EDGE_SESSIONS (default 4000), BENCH_EDGE_RATE (sessions offered a second, 1500),
 * BENCH_EDGE_WINDOW (4000), BENCH_EDGE_CHARGE_MS (500), BENCH_EDGE_EVS (40), BENCH_EDGE_HCSS (100),
 * BENCH_EDGE_BATCH (the edge's batch size, 100). The last line is one JSON object. Figures only:
 * nothing here asserts.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NonceManager, parseEther, Wallet } from 'ethers';
import mqtt from 'mqtt';
import { SettlementClient } from '../contracts/client.js';
import { connectRpc } from '../contracts/rpc.js';
import {
  computeTxId,
  decode,
  encode,
  type MessageInput,
  REQUEST_STATUS,
  signatureBackend,
  signEnvelope,
} from '../protocol/index.js';
import { type TermsJson, termsFromJson } from '../agent/core/session.js';
import { type AgentProcess, control, type LogLine, spawnAgent, waitReady } from '../sim/agents.js';
import { anvilAccounts } from '../sim/chain.js';
import { buildWorld, type Device } from '../sim/world.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const num = (name: string, dflt: number) => Number(process.env[name] ?? dflt);
const SESSIONS = num('BENCH_EDGE_SESSIONS', 4000);
const WINDOW = num('BENCH_EDGE_WINDOW', 4000);
const EVS = num('BENCH_EDGE_EVS', 40);
const HCSS = num('BENCH_EDGE_HCSS', 100);
const BATCH = num('BENCH_EDGE_BATCH', 100);
const RATE = num('BENCH_EDGE_RATE', 1500);
const CHARGE_MS = num('BENCH_EDGE_CHARGE_MS', 500);
/** Sessions of one station in flight at once (the contract's ring of 16 open reservations). */
const PER_STATION = 15;
const EDGE_NODE_OPTIONS = '--max-old-space-size=1024 --max-semi-space-size=16';
const PRICE = 300_000_000_000_000n; // wei per kWh
const ENERGY_WH = 4000n;

const out = (l: string) => process.stdout.write(`${l}\n`);

function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

/** CPU ms of the process listening on a local TCP port (anvil, mosquitto), from `ss`. */
function cpuMsOnPort(port: string): number {
  try {
    const line = execFileSync('ss', ['-ltnpH', `sport = :${port}`], { encoding: 'utf8' });
    const pid = /pid=(\d+)/.exec(line)?.[1];
    return pid ? cpuMs(Number(pid)) : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

const percentile = (xs: number[], p: number) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
};

interface Session {
  txid: string;
  hcs: string;
  /** The search and the station's response: sent when the session starts. */
  opening: Uint8Array[];
  /** The car's consent (receipt 0: the edge reserves the cap on chain with it), on the mutual. */
  consent: Uint8Array;
  /** Both reports: sent CHARGE_MS after the mutual agreement (the charge). */
  reports: Uint8Array[];
  openedAt?: number;
  consentAt?: number;
  lastSentAt?: number;
  settledAt?: number;
}

async function main(): Promise<void> {
  if (!existsSync(join(root, 'dist/p2pev-run/p2pev-run.mjs'))) {
    out('building dist/ (npm run build)');
    execFileSync(process.execPath, [join(root, '.ci/build.mjs')], { stdio: 'inherit' });
  }
  const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  const dir = mkdtempSync(join(base, 'p2pev-edge-bench-'));
  // Stations on a 1 km grid around one point, cars among them; no meters: nobody charges here.
  const stations = Array.from({ length: HCSS }, (_, i) => ({
    name: `HCS${i + 1}`,
    latitude: 48.1 + (i % 10) * 0.009,
    longitude: 11.5 + Math.floor(i / 10) * 0.013,
    priceWeiPerKWh: PRICE,
    powerKw: 11,
    profile: '',
  }));
  const cars = Array.from({ length: EVS }, (_, i) => ({
    name: `EV${i + 1}`,
    latitude: 48.1 + (i % 10) * 0.009,
    longitude: 11.5 + Math.floor(i / 10) * 0.013,
    profile: '',
  }));
  out(`building the world: ${HCSS} stations, ${EVS} cars, anvil, mosquitto`);
  const world = await buildWorld({
    dir,
    stations,
    evs: cars,
    edge: true,
    broker: 'mosquitto',
    overrides: {
      edge: { batchSize: BATCH, batchMaxWaitMs: 500, suggestions: 5 },
      log: { level: process.env.BENCH_EDGE_LOG ?? 'warn' },
    },
  });
  const accounts = anvilAccounts(2 + HCSS + EVS);
  const keyOf = new Map(accounts.map((a) => [a.address.toLowerCase(), a.privateKey]));
  const edgeDevice = world.devices.find((d) => d.role === 'edge')!;
  const hcsDevices = world.devices.filter((d) => d.role === 'hcs');
  const evDevices = world.devices.filter((d) => d.role === 'ev');
  let edge: AgentProcess | undefined;
  let client: mqtt.MqttClient | undefined;
  try {
    // Each car's deposit, from its own account (no EV agent runs to make it).
    const { provider } = await connectRpc(world.rpcUrl);
    await Promise.all(
      evDevices.map((d) =>
        SettlementClient.fromDeployment(
          world.deployment,
          new NonceManager(new Wallet(keyOf.get(d.address)!, provider)),
        ).deposit(parseEther('50')),
      ),
    );
    const { chainId } = await provider.getNetwork();
    const domain = { chainId, verifyingContract: world.deployment.address };
    const server = edgeDevice.address;

    // Every session signed before the clock starts: the figures are the edge's, not the generator's.
    const settleBy = Math.floor(Date.now() / 1000) + 3 * 3600;
    const seqs = new Map<string, bigint>();
    const sessions: Session[] = [];
    const signStart = performance.now();
    for (let i = 0; i < SESSIONS; i++) {
      const ev = evDevices[i % EVS]!;
      const car = cars[i % EVS]!;
      // Stations in turn: each one's sessions in seq order (the contract keeps a station's open
      // reservations in a ring of 16 slots, so at most 15 of a station's sessions are in flight).
      const hcs = hcsDevices[i % HCSS]!;
      const seq = (seqs.get(hcs.address) ?? 0n) + 1n;
      seqs.set(hcs.address, seq);
      const terms: TermsJson = { seq: seq.toString(), price: PRICE.toString(), maxWh: 6000, settleBy };
      const txid = computeTxId(termsFromJson(ev.address, hcs.address, terms), domain);
      const evKey = keyOf.get(ev.address)!;
      const hcsKey = keyOf.get(hcs.address)!;
      const sign = (msg: MessageInput, key: string) => signEnvelope(encode(msg), key, domain);
      const report = {
        m: 'bench',
        p: 'sim',
        s: 1000,
        e: 1000 + Number(ENERGY_WH),
        t0: settleBy - 10_000,
        st: 1,
      };
      sessions.push({
        txid,
        hcs: hcs.address,
        opening: [
          sign(
            {
              type: 'search',
              requester: ev.address,
              server,
              latitude: car.latitude,
              longitude: car.longitude,
              radiusM: 5000,
              optional: { n: `s${i}` },
            },
            evKey,
          ),
          sign(
            {
              type: 'response',
              status: REQUEST_STATUS.accept,
              sender: hcs.address,
              receiver: ev.address,
              optional: { ...terms, kw: 11, n: `r${i}` },
            },
            hcsKey,
          ),
        ],
        consent: sign(
          {
            type: 'chargeReceived',
            ev: ev.address,
            hcs: hcs.address,
            txid,
            energyWh: 0n,
            optional: { i: 0 },
          },
          evKey,
        ),
        reports: [
          sign(
            {
              type: 'chargeReceived',
              ev: ev.address,
              hcs: hcs.address,
              txid,
              energyWh: ENERGY_WH,
              optional: { ...report, t1: settleBy - 9000 },
            },
            evKey,
          ),
          sign(
            {
              type: 'chargeProvided',
              ev: ev.address,
              hcs: hcs.address,
              txid,
              energyWh: ENERGY_WH,
              optional: { ...report, t1: settleBy - 9000 },
            },
            hcsKey,
          ),
        ],
      });
    }
    out(
      `${SESSIONS} sessions pre-signed in ${((performance.now() - signStart) / 1000).toFixed(1)} s (${signatureBackend().name})`,
    );

    const byTxid = new Map(sessions.map((s) => [s.txid, s]));
    const onLog = (line: LogLine, d: Device) => {
      if (line.level >= 40 || (process.env.BENCH_EDGE_LOG && /batch/.test(line.msg)))
        process.stderr.write(
          `${new Date(Number(line.time ?? Date.now())).toISOString().slice(17, 23)} ${d.name} ${line.msg} ${JSON.stringify({ ...line, msg: undefined, time: undefined, level: undefined, pid: undefined, hostname: undefined, agent: undefined })}\n`,
        );
    };
    // An edge is a server, not a Pi: a young generation sized for throughput (the devices' 1 MB
    // semi-spaces made it collect garbage for ~40 % of its CPU); BENCH_EDGE_NODE_OPTIONS to compare.
    const env: Record<string, string> = {
      P2PEV_DIST: '1',
      NODE_OPTIONS: process.env.BENCH_EDGE_NODE_OPTIONS ?? EDGE_NODE_OPTIONS,
    };
    // A profile names the compiled modules' functions, not the minified bundle's.
    if (process.env.BENCH_EDGE_PROFILE) env.P2PEV_BUNDLE = '0';
    const profile = process.env.BENCH_EDGE_PROFILE;
    edge = await spawnAgent(
      edgeDevice,
      onLog,
      env,
      profile ? ['--cpu-prof', `--cpu-prof-dir=${profile}`] : [],
    );
    await waitReady(edge, 60_000);

    // The generator hears what the edge sends to every car and station (QoS 0: nobody acks here).
    const c = mqtt.connect(world.brokerUrl, { clean: true, writeCache: false });
    client = c;
    await new Promise<void>((resolve, reject) => {
      c.once('connect', () => resolve());
      c.once('error', reject);
    });
    await c.subscribeAsync('p2pev/v1/to/+', { qos: 0 });
    const edgeInbox = `p2pev/v1/to/${server}`;
    let settled = 0;
    let refused = 0;
    let inFlight = 0;
    let next = 0;
    let resolveDone: () => void = () => {};
    const done = new Promise<void>((r) => {
      resolveDone = r;
    });
    // Offered at RATE sessions/s at most (paced every 10 ms: a broker queues only so much for one
    // client, mosquitto 1,000 messages by default), and never more than WINDOW in flight.
    let offered = 0;
    const open = new Map<string, number>();
    const pump = () => {
      const allowed = Math.floor(((performance.now() - t0) / 1000) * RATE) + 1;
      while (inFlight < WINDOW && next < sessions.length && offered < allowed) {
        const s = sessions[next]!;
        if ((open.get(s.hcs) ?? 0) >= PER_STATION) return;
        next++;
        offered++;
        inFlight++;
        open.set(s.hcs, (open.get(s.hcs) ?? 0) + 1);
        for (const env of s.opening) c.publish(edgeInbox, Buffer.from(env), { qos: 1 });
        s.openedAt = performance.now();
      }
    };
    c.on('message', (topic, payload) => {
      if (topic === edgeInbox) return;
      // The transaction message goes to both parties: count it once, at the car's inbox.
      let msg: ReturnType<typeof decode>;
      try {
        msg = decode(new Uint8Array(payload.subarray(0, payload.length - 65)));
      } catch {
        return;
      }
      if (msg.type === 'mutual' && topic === `p2pev/v1/to/${msg.ev}`) {
        const s = byTxid.get(msg.txid);
        if (!s || s.consentAt) return;
        s.consentAt = performance.now();
        c.publish(edgeInbox, Buffer.from(s.consent), { qos: 1 });
        // The charge: the edge reserves the cap on chain meanwhile (its next tick).
        setTimeout(() => {
          for (const env of s.reports) c.publish(edgeInbox, Buffer.from(env), { qos: 1 });
          s.lastSentAt = performance.now();
        }, CHARGE_MS);
        return;
      }
      if (msg.type !== 'transaction' || topic !== `p2pev/v1/to/${msg.sender}`) return;
      const s = byTxid.get(msg.txid);
      if (!s || s.settledAt) return;
      s.settledAt = performance.now();
      if (msg.paymentStatus === 2) settled++;
      else refused++;
      inFlight--;
      open.set(s.hcs, (open.get(s.hcs) ?? 1) - 1);
      if (settled + refused === sessions.length) resolveDone();
      else pump();
    });

    const anvilPort = new URL(world.rpcUrl).port;
    const brokerPort = new URL(world.brokerUrl).port;
    const others0 = {
      anvil: cpuMsOnPort(anvilPort),
      broker: cpuMsOnPort(brokerPort),
      me: process.cpuUsage(),
    };
    const cpu0 = cpuMs(edge.child.pid!);
    const t0 = performance.now();
    const pacer = setInterval(pump, 10);
    pump();
    const progress = setInterval(() => {
      void control<{ edge?: { bills: Record<string, number> } }>(edgeDevice, 'status')
        .then((st) => JSON.stringify(st.edge?.bills ?? {}))
        .catch(() => '')
        .then((bills) =>
          out(
            `  ${settled} settled, ${refused} refused, ${inFlight} in flight, ${((performance.now() - t0) / 1000).toFixed(0)} s; the edge's bills ${bills}`,
          ),
        );
    }, 5000);
    const timeoutMs = Math.max(120_000, SESSIONS * 50);
    await Promise.race([done, new Promise((r) => setTimeout(r, timeoutMs))]);
    clearInterval(progress);
    clearInterval(pacer);
    const wallMs = performance.now() - t0;
    const edgeCpu = cpuMs(edge.child.pid!) - cpu0;
    const finished = sessions.filter((s) => s.settledAt !== undefined);
    const latencies = finished.map((s) => s.settledAt! - s.lastSentAt!);
    const agreeing = finished.map((s) => s.consentAt! - s.openedAt!);
    const lastAt = Math.max(...finished.map((s) => s.settledAt!));
    const sessionsPerSec = finished.length / ((lastAt - t0) / 1000);
    const anvilCpu = cpuMsOnPort(anvilPort) - others0.anvil;
    const brokerCpu = cpuMsOnPort(brokerPort) - others0.broker;
    const me = process.cpuUsage(others0.me);
    const generatorCpu = (me.user + me.system) / 1000;
    const figures = {
      sessions: SESSIONS,
      settled,
      refused,
      unfinished: SESSIONS - finished.length,
      window: WINDOW,
      chargeMs: CHARGE_MS,
      offeredPerSec: RATE,
      batchSize: BATCH,
      edgeSessionsPerSec: Math.round(sessionsPerSec),
      edgeP50Ms: Math.round(percentile(latencies, 50)),
      edgeP95Ms: Math.round(percentile(latencies, 95)),
      agreementP50Ms: Math.round(percentile(agreeing, 50)),
      agreementP95Ms: Math.round(percentile(agreeing, 95)),
      edgeCpuMsPerSession: +(edgeCpu / Math.max(1, finished.length)).toFixed(3),
      edgeCpuShare: +(edgeCpu / wallMs).toFixed(2),
      anvilCpuMsPerSession: +(anvilCpu / Math.max(1, finished.length)).toFixed(3),
      brokerCpuMsPerSession: +(brokerCpu / Math.max(1, finished.length)).toFixed(3),
      generatorCpuMsPerSession: +(generatorCpu / Math.max(1, finished.length)).toFixed(3),
      wallS: +(wallMs / 1000).toFixed(1),
      signatureBackend: signatureBackend().name,
      edgeNodeOptions: env.NODE_OPTIONS,
    };
    out('');
    out(
      `${finished.length}/${SESSIONS} sessions settled in ${figures.wallS} s: ${figures.edgeSessionsPerSec} sessions/s; last report → settled p50 ${figures.edgeP50Ms} ms, p95 ${figures.edgeP95Ms} ms`,
    );
    out(
      `edge CPU ${figures.edgeCpuMsPerSession} ms a session (${Math.round(figures.edgeCpuShare * 100)} % of a core over the run; at most ${Math.round(1000 / figures.edgeCpuMsPerSession)} sessions/s on one core)`,
    );
    out(
      `beside it, CPU ms a session: anvil ${figures.anvilCpuMsPerSession}, mosquitto ${figures.brokerCpuMsPerSession}, this generator ${figures.generatorCpuMsPerSession}`,
    );
    out(JSON.stringify(figures));
  } finally {
    await client?.endAsync(true);
    await edge?.stop();
    await world.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
