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
 * As the parties do, the generator acknowledges the edge's amount and transaction messages (signed
 * then, with the party's key: the edge resends them until acknowledged), and sends again what got
 * no answer in BENCH_EDGE_RESEND_MS (an overloaded edge drops what its queue cannot hold).
 *
 * Only the edge is an agent: the cars and stations are accounts registered, verified and funded
 * straight on chain; the edge's member cache is warmed (each member asks about itself) before the
 * clock starts. Enough members that the edge's per-member limits (agent/core/gate.ts: 10 searches
 * in a burst, 40 signature checks) do not bind: BENCH_EDGE_SESSIONS / BENCH_EDGE_EVS ≤ 10.
 *
 * At most BENCH_EDGE_WINDOW sessions are in flight (a closed loop, so the edge is kept busy but not
 * buried). Figures: sessions settled per second over the run, latency from a session's last report
 * to its transaction message (p50/p95), and the edge's CPU time per session up to the last
 * settlement (from /proc/<pid>/stat), with anvil's, mosquitto's and the generator's beside it and
 * the load average. BENCH_EDGE_PROFILE=<dir> writes the edge's CPU profile there.
 *
 * Knobs: BENCH_EDGE_SESSIONS (default 4000), BENCH_EDGE_RATE (sessions offered a second, 1500),
 * BENCH_EDGE_WINDOW (1500), BENCH_EDGE_CHARGE_MS (500), BENCH_EDGE_EVS (400), BENCH_EDGE_HCSS (300),
 * BENCH_EDGE_BATCH (the edge's batch size, 100), BENCH_EDGE_GAS_LIMIT (anvil's block gas limit,
 * raised to 100,000,000 from its 30,000,000 so that batches of hundreds fit a block),
 * BENCH_EDGE_RESEND_MS (15000). The last line is one JSON object. Figures only: nothing here asserts.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type JsonRpcProvider, keccak256, NonceManager, parseEther, toUtf8Bytes, Wallet } from 'ethers';
import mqtt from 'mqtt';
import { SettlementClient } from '../contracts/client.js';
import { connectRpc } from '../contracts/rpc.js';
import {
  computeTxId,
  decode,
  encode,
  type MessageInput,
  PAYMENT_STATUS,
  REQUEST_STATUS,
  signatureBackend,
  signEnvelope,
} from '../protocol/index.js';
import { type TermsJson, termsFromJson } from '../agent/core/session.js';
import { ackIdOf } from '../agent/core/outbox.js';
import {
  type AgentProcess,
  control,
  type LogLine,
  spawnAgent,
  unitMemoryEnvironment,
  waitReady,
} from '../sim/agents.js';
import { anvilAccounts } from '../sim/chain.js';
import { buildWorld, type Device } from '../sim/world.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const num = (name: string, dflt: number) => Number(process.env[name] ?? dflt);
const SESSIONS = num('BENCH_EDGE_SESSIONS', 4000);
const WINDOW = num('BENCH_EDGE_WINDOW', 1500);
const EVS = num('BENCH_EDGE_EVS', 400);
const HCSS = num('BENCH_EDGE_HCSS', 300);
const BATCH = num('BENCH_EDGE_BATCH', 100);
const RATE = num('BENCH_EDGE_RATE', 1500);
const CHARGE_MS = num('BENCH_EDGE_CHARGE_MS', 500);
/** anvil's block gas limit: raised from its 30 M so that a batch of hundreds of bills fits a block. */
const GAS_LIMIT = num('BENCH_EDGE_GAS_LIMIT', 100_000_000);
/** A party sends again what got no answer this long (ms). */
const RESEND_MS = num('BENCH_EDGE_RESEND_MS', 15_000);
/** Sessions of one station in flight at once (the contract's ring of 16 open reservations). */
const PER_STATION = 15;
const PRICE = 300_000_000_000_000n; // wei per kWh
const ENERGY_WH = 4000n;

const out = (l: string) => process.stdout.write(`${l}\n`);
/** The machine's 1-minute load average: the figures are from a shared machine. */
const loadAverage = () => +readFileSync('/proc/loadavg', 'utf8').split(' ')[0]!;

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

/** A pre-signed envelope and who signed it (the topic names the sender: `<prefix>/to/<to>/from/<from>`). */
interface Signed {
  from: string;
  env: Uint8Array;
}

interface Session {
  txid: string;
  hcs: string;
  /** The search and the station's response: sent when the session starts. */
  opening: Signed[];
  /** The car's consent (receipt 0: the edge reserves the cap on chain with it), on the mutual. */
  consent: Signed;
  /** Both reports: sent CHARGE_MS after the mutual agreement (the charge). */
  reports: Signed[];
  openedAt?: number;
  consentAt?: number;
  lastSentAt?: number;
  /** When the generator last sent this session anything (for its resends). */
  touchedAt?: number;
  resends?: number;
  /** When the edge's amount came (it has both reports: nothing more to send). */
  amountAt?: number;
  settledAt?: number;
}

/** Runs `fn` over `items`, `width` at a time. */
async function inParallel<T>(items: T[], width: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += width) await Promise.all(items.slice(i, i + width).map(fn));
}

/** Registers each station and car from its own account, verifies them all, and funds each car's deposit. */
async function registerMembers(
  world: Awaited<ReturnType<typeof buildWorld>>,
  provider: JsonRpcProvider,
  keyOf: Map<string, string>,
  stations: { latitude: number; longitude: number; priceWeiPerKWh: bigint; powerKw: number; name: string }[],
  hcss: { address: string }[],
  evs: { address: string }[],
): Promise<void> {
  const member = (address: string) =>
    SettlementClient.fromDeployment(
      world.deployment,
      new NonceManager(new Wallet(keyOf.get(address)!, provider)),
    );
  await inParallel([...hcss, ...evs], 100, (m) =>
    provider.send('anvil_setBalance', [m.address, `0x${parseEther('100').toString(16)}`]),
  );
  await inParallel([...hcss.entries()], 50, ([i, h]) => {
    const st = stations[i]!;
    return member(h.address).register('hcs', {
      identityCommitment: keccak256(toUtf8Bytes(`bench identity of ${st.name}`)),
      latMicroDeg: Math.round(st.latitude * 1e6),
      lonMicroDeg: Math.round(st.longitude * 1e6),
      priceWeiPerKWh: st.priceWeiPerKWh,
      powerW: Math.round(st.powerKw * 1000),
      profileHash: keccak256(toUtf8Bytes(st.name)),
    });
  });
  await inParallel(evs, 50, (e) =>
    member(e.address).register('ev', keccak256(toUtf8Bytes(`bench ${e.address}`))),
  );
  await inParallel([...hcss, ...evs], 50, (m) => world.operator.verify(m.address));
  await inParallel(evs, 50, (e) => member(e.address).deposit(parseEther('50')));
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
  // Only the edge is an agent here: the members are accounts registered, verified and (the cars)
  // funded straight on chain, in parallel (a keystore and a config each cost minutes at this size).
  const world = await buildWorld({
    dir,
    stations: [],
    evs: [],
    edge: true,
    broker: 'mosquitto',
    blockGasLimit: GAS_LIMIT,
    overrides: {
      edge: { batchSize: BATCH, batchMaxWaitMs: 500, suggestions: 5 },
      log: { level: process.env.BENCH_EDGE_LOG ?? 'warn' },
    },
  });
  const accounts = anvilAccounts(2 + HCSS + EVS);
  const keyOf = new Map(accounts.map((a) => [a.address.toLowerCase(), a.privateKey]));
  const edgeDevice = world.devices.find((d) => d.role === 'edge')!;
  const hcsDevices = accounts.slice(2, 2 + HCSS).map((a) => ({ address: a.address.toLowerCase() }));
  const evDevices = accounts.slice(2 + HCSS).map((a) => ({ address: a.address.toLowerCase() }));
  let edge: AgentProcess | undefined;
  let client: mqtt.MqttClient | undefined;
  try {
    const { provider } = await connectRpc(world.rpcUrl);
    const setupStart = performance.now();
    await registerMembers(world, provider, keyOf, stations, hcsDevices, evDevices);
    out(
      `${HCSS + EVS} members registered, verified and funded in ${((performance.now() - setupStart) / 1000).toFixed(1)} s`,
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
      const sign = (msg: MessageInput, key: string): Signed => ({
        from: key === evKey ? ev.address : hcs.address,
        env: signEnvelope(encode(msg), key, domain),
      });
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
              // The send time: the edge refuses a search more than 300 s off (agent/core/gate.ts).
              optional: { n: `s${i}`, t: Math.floor(Date.now() / 1000) },
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
    // An edge is a server, not a Pi: a young generation sized for throughput, as the unit says for
    // an edge (agent/install/p2pev.service; the devices' 1 MB semi-spaces made it collect garbage
    // for ~40 % of its CPU); BENCH_EDGE_NODE_OPTIONS to compare.
    const serverEnv = unitMemoryEnvironment('edge');
    const env: Record<string, string> = {
      P2PEV_DIST: '1',
      NODE_OPTIONS: process.env.BENCH_EDGE_NODE_OPTIONS ?? serverEnv.NODE_OPTIONS ?? '',
      // And V8's optimizing compilers, as a server's edge runs (P2PEV_JIT=0 to compare).
      P2PEV_JIT: process.env.P2PEV_JIT ?? serverEnv.P2PEV_JIT ?? '0',
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

    // The generator hears what the edge sends to every car and station (MQTT 5: not its own
    // publishes back), and acknowledges, as each party does, the amount and transaction messages
    // the edge resends until acknowledged (agent/core/outbox.ts): signed then, by the party's key.
    const c = mqtt.connect(world.brokerUrl, { clean: true, writeCache: false, protocolVersion: 5 });
    client = c;
    await new Promise<void>((resolve, reject) => {
      c.once('connect', () => resolve());
      c.once('error', reject);
    });
    await c.subscribeAsync('p2pev/v1/to/+/from/+', { qos: 0, nl: true });
    const edgeInbox = `p2pev/v1/to/${server}`;
    const toEdge = (s: Signed) => c.publish(`${edgeInbox}/from/${s.from}`, Buffer.from(s.env), { qos: 1 });
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
        for (const env of s.opening) toEdge(env);
        s.openedAt = performance.now();
        s.touchedAt = s.openedAt;
      }
    };
    let acks = 0;
    c.on('message', (topic, payload) => {
      if (topic.startsWith(`${edgeInbox}/`)) return;
      const to = topic.slice('p2pev/v1/to/'.length, topic.indexOf('/from/'));
      // The transaction message goes to both parties: count it once, at the car's inbox.
      let msg: ReturnType<typeof decode>;
      try {
        msg = decode(new Uint8Array(payload.subarray(0, payload.length - 65)));
      } catch {
        return;
      }
      if (msg.type === 'mutual' && to === msg.ev) {
        const s = byTxid.get(msg.txid);
        if (!s || s.consentAt) return;
        s.consentAt = performance.now();
        toEdge(s.consent);
        // The charge: the edge reserves the cap on chain meanwhile (its next tick).
        setTimeout(() => {
          for (const env of s.reports) toEdge(env);
          s.lastSentAt = performance.now();
          s.touchedAt = s.lastSentAt;
        }, CHARGE_MS);
        return;
      }
      const isAck = msg.type === 'amount' && (msg.optional as { ack?: unknown } | undefined)?.ack;
      if (msg.type === 'amount' && !isAck && to === msg.sender) {
        const s = byTxid.get(msg.txid);
        if (s) s.amountAt ??= performance.now();
      }
      // What the agents acknowledge (agent/core/outbox.ts): the transaction, not the bill's note.
      if (msg.type === 'transaction' && msg.paymentStatus !== PAYMENT_STATUS.pending) {
        acks++;
        const ack: MessageInput = {
          type: 'completion',
          ev: msg.sender,
          hcs: msg.receiver,
          txid: msg.txid,
          optional: { ack: ackIdOf(new Uint8Array(payload)) },
        };
        toEdge({ from: to, env: signEnvelope(encode(ack), keyOf.get(to)!, domain) });
      }
      if (msg.type !== 'transaction' || to !== msg.sender) return;
      const s = byTxid.get(msg.txid);
      if (!s || s.settledAt) return;
      s.settledAt = performance.now();
      lastSettledCpu = cpuMs(edge!.child.pid!);
      if (msg.paymentStatus === 2) settled++;
      else refused++;
      inFlight--;
      open.set(s.hcs, (open.get(s.hcs) ?? 1) - 1);
      if (settled + refused === sessions.length) resolveDone();
      else pump();
    });

    // The edge's member cache warmed as a running edge's is (agent/core/gate.ts looks unknown
    // senders up on chain 4 at a time and drops beyond 256 waiting): every member asks once about
    // itself, paced, before the clock starts.
    const members = [...hcsDevices, ...evDevices];
    const known = new Set<string>();
    const warm = (topic: string, payload: Buffer) => {
      if (topic.startsWith(`${edgeInbox}/`) || payload.length <= 65) return;
      try {
        const m = decode(new Uint8Array(payload.subarray(0, payload.length - 65)));
        if (m.type === 'verification') known.add(m.subject);
      } catch {}
    };
    c.on('message', warm);
    for (let round = 1; round <= 10 && known.size < members.length; round++) {
      for (const [i, m] of members.filter((x) => !known.has(x.address)).entries()) {
        const ask: MessageInput = {
          type: 'reqAuthInfo',
          requester: m.address,
          server,
          subject: m.address,
          nonce: BigInt(round),
        };
        toEdge({ from: m.address, env: signEnvelope(encode(ask), keyOf.get(m.address)!, domain) });
        if (i % 50 === 49) await new Promise((r) => setTimeout(r, 100));
      }
      for (let i = 0; i < 50 && known.size < members.length; i++)
        await new Promise((r) => setTimeout(r, 100));
    }
    c.off('message', warm);
    const answered = known.size;
    out(`edge warmed: ${answered}/${members.length} members known`);

    const anvilPort = new URL(world.rpcUrl).port;
    const brokerPort = new URL(world.brokerUrl).port;
    const others0 = {
      anvil: cpuMsOnPort(anvilPort),
      broker: cpuMsOnPort(brokerPort),
      me: process.cpuUsage(),
    };
    // The edge's signer recoveries and signatures: per session, what its crypto is (a duplicate
    // check of one envelope would show here).
    type Crypto = {
      signatures?: { checks: number; signed: number };
      messages?: { received: number; acks: number };
      journal?: { flushes: number };
    };
    const crypto0 = await control<Crypto>(edgeDevice, 'status');
    const cpu0 = cpuMs(edge.child.pid!);
    let lastSettledCpu: number | undefined;
    const t0 = performance.now();
    const pacer = setInterval(pump, 10);
    // As the parties do: a car asks again when no agreement came (an edge drops what its queue
    // cannot hold: reason `overload`), a report is sent again until the edge answers (its outbox).
    // The same envelopes: one the edge dropped unread was never remembered as seen.
    let resent = 0;
    const resender = setInterval(() => {
      const now = performance.now();
      for (let k = 0; k < next; k++) {
        const s = sessions[k]!;
        if (s.settledAt || s.amountAt || now - (s.touchedAt ?? now) < RESEND_MS) continue;
        s.touchedAt = now;
        s.resends = (s.resends ?? 0) + 1;
        resent++;
        if (!s.consentAt) for (const env of s.opening) toEdge(env);
        else if (s.lastSentAt) for (const env of [s.consent, ...s.reports]) toEdge(env);
      }
    }, 1000);
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
    clearInterval(resender);
    const wallMs = performance.now() - t0;
    // The edge's CPU up to the last settlement: not the idle wait for sessions that never finished.
    const edgeCpu = (lastSettledCpu ?? cpuMs(edge.child.pid!)) - cpu0;
    const finished = sessions.filter((s) => s.settledAt !== undefined);
    const latencies = finished.map((s) => s.settledAt! - s.lastSentAt!);
    const agreeing = finished.map((s) => s.consentAt! - s.openedAt!);
    const lastAt = Math.max(...finished.map((s) => s.settledAt!));
    const sessionsPerSec = finished.length / ((lastAt - t0) / 1000);
    const crypto1 = await control<Crypto>(edgeDevice, 'status');
    const perSession = (n: number | undefined, n0: number | undefined) =>
      n === undefined || n0 === undefined
        ? Number.NaN
        : +((n - n0) / Math.max(1, finished.length)).toFixed(2);
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
      edgeChecksPerSession: perSession(crypto1.signatures?.checks, crypto0.signatures?.checks),
      edgeSignaturesPerSession: perSession(crypto1.signatures?.signed, crypto0.signatures?.signed),
      // Messages checked and handled (acks included), per session.
      edgeMessagesInPerSession: perSession(
        crypto1.messages && crypto1.messages.received + crypto1.messages.acks,
        crypto0.messages && crypto0.messages.received + crypto0.messages.acks,
      ),
      edgeJournalFlushesPerSession: perSession(crypto1.journal?.flushes, crypto0.journal?.flushes),
      acksSent: acks,
      resent,
      load: loadAverage(),
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
    out(
      `the edge's crypto a session: ${figures.edgeChecksPerSession} signer recoveries, ${figures.edgeSignaturesPerSession} signatures (${figures.edgeMessagesInPerSession} messages handled); ${figures.edgeJournalFlushesPerSession} journal writes`,
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
