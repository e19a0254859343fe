/**
 * A whole simulated deployment on this machine: anvil with the settlement contract, a broker,
 * one simulated Modbus meter per device, keystores and agent configs for EVs, HCSs and an edge,
 * every member funded, registered and verified by the operator. The sim (`p2pev sim`) and the
 * agent tests both build on it; the agents themselves are the real `p2pev run` (or Agent.start).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { keccak256, NonceManager, parseEther, toUtf8Bytes, Wallet } from 'ethers';
import { createKeystore } from '../agent/core/keys.js';
import { SettlementClient } from '../contracts/client.js';
import { type Deployment, deploySettlement, type SettlementParams } from '../contracts/deploy.js';
import { connectRpc, jsonRpc } from '../contracts/rpc.js';
import { type Broker, startEmbeddedBroker, startMosquitto } from './broker.js';
import { type Anvil, anvilAccounts, freePort, startAnvil } from './chain.js';
import { eachLimited, packedBlocks, sendAndConfirm, type WorldCall } from './enrol.js';
import { startSimWallbox, type SimWallbox } from './charger/modbus.js';
import { SimOcppChargePoint } from './charger/ocpp.js';
import type { SimOutlet } from './charger/outlet.js';
import { type SimMeter, startSimMeter } from './meter.js';
import type { SimMeterModel } from './meter/model.js';
import { openPtyPair, type PtyPair } from './pty.js';

export const SIM_PASSWORD = 'sim-only-password';
/** scrypt cost for sim keystores: real devices use the default 2^17; dozens of sim agents can't. */
export const SIM_SCRYPT_N = 1024;

export interface StationSpec {
  name: string;
  latitude: number;
  longitude: number;
  priceWeiPerKWh: bigint;
  powerKw: number;
  profile: string;
  /**
   * What switches the station's power: a simulated OCPP 1.6J wallbox (connecting to the agent's
   * central system), a simulated Modbus wallbox (Phoenix EV-ETH over TCP, or Heidelberg EC over
   * RTU with `meters: 'rtu'`), or the simulated meter's own control register (tests). Default sim-control.
   */
  charger?: 'ocpp' | 'modbus' | 'sim-control';
}

export interface EvSpec {
  name: string;
  latitude: number;
  longitude: number;
  profile: string;
}

export interface WorldOptions {
  dir: string;
  stations: StationSpec[];
  evs: EvSpec[];
  edge: boolean;
  /** An external broker URL, 'mosquitto' (start one), or the embedded broker ('embedded', the default). */
  broker?: string;
  rpcUrl?: string;
  meters?: 'tcp' | 'rtu';
  /** Simulated seconds per real second on the meters. */
  timeScale?: number;
  fundEther?: string;
  /** Deploy-time parameters of the contract (tolerance, window); the defaults otherwise. */
  settlementParams?: Partial<SettlementParams>;
  depositEther?: string;
  /**
   * The world makes each EV's deposit itself (signed with the EV's key, before any agent starts)
   * instead of each EV agent topping it up as it starts (agent/roles/ev.ts, what a real car does):
   * thousands of agents starting at once would each send a transaction and poll for its receipt.
   * The agent then finds its deposit there and sends nothing. Default false (the agents deposit).
   */
  depositsByWorld?: boolean;
  /** anvil's block gas limit (default 30,000,000): a bench with large batches raises it. */
  blockGasLimit?: number;
  /** Modbus wallbox watchdog written by the agents (charger.failsafeS), default 15 s. */
  chargerFailsafeS?: number;
  /** The simulated Modbus wallbox's profile (default: phoenix-ev-eth over TCP, heidelberg-ec over RTU). */
  modbusProfile?: string;
  /** Agent config overrides (timeouts, edge batching …). */
  overrides?: Record<string, unknown>;
  log?: (line: string) => void;
}

export interface Device {
  name: string;
  /**
   * The agent's local control port (status, charge, stop): 0 in the config, so an agent in this
   * process binds whatever the OS gives (startAgent then records it here); a spawned agent gets a
   * port picked just before it starts (sim/agents.ts).
   */
  controlPort: number;
  role: 'ev' | 'hcs' | 'edge';
  address: string;
  configPath: string;
  dataDir: string;
  meter?: SimMeter;
  pty?: PtyPair;
  /** A station's simulated charger, when it has one (what the cable flows through). */
  outlet?: SimOutlet;
  chargePoint?: SimOcppChargePoint;
  wallbox?: SimWallbox;
}

export interface World {
  anvil?: Anvil;
  rpcUrl: string;
  broker?: Broker;
  brokerUrl: string;
  deployment: Deployment;
  deploymentFile: string;
  operator: SettlementClient;
  devices: Device[];
  /** Seconds each step of the build took: devices, registrations, deposits, verifications. */
  buildSeconds: Record<'devices' | 'registrations' | 'deposits' | 'verifications', number>;
  close(): Promise<void>;
}

/** Devices set up at once: their keystores' scrypt runs in libuv's threads, beside the rest. */
const DEVICES_AT_ONCE = 8;

const round1 = (x: number) => Math.round(x * 10) / 10;

export async function buildWorld(opts: WorldOptions): Promise<World> {
  const log = opts.log ?? (() => {});
  const accounts = anvilAccounts(2 + opts.stations.length + opts.evs.length);
  let anvil: Anvil | undefined;
  let rpcUrl = opts.rpcUrl;
  if (!rpcUrl) {
    anvil = await startAnvil({
      // The operator and the edge (and a few spare, funded by anvil); members are funded below.
      // anvil deriving and printing thousands of accounts took seconds at start.
      accounts: Math.min(accounts.length, 10),
      ...(opts.blockGasLimit ? { gasLimit: opts.blockGasLimit } : {}),
    });
    rpcUrl = anvil.rpcUrl;
    log(`anvil ${rpcUrl}`);
  }
  let broker: Broker | undefined;
  let brokerUrl = opts.broker === 'embedded' ? undefined : opts.broker;
  if (!brokerUrl || brokerUrl === 'mosquitto') {
    broker = brokerUrl === 'mosquitto' ? await startMosquitto() : await startEmbeddedBroker();
    brokerUrl = broker.url;
  }
  log(`broker ${brokerUrl}`);
  const { provider, chainId } = await connectRpc(rpcUrl);
  // The build's own calls (balances, the members' transactions) over a kept-alive raw client:
  // ethers' provider waits 10 ms to batch each request, 11 ms a device when awaited one by one.
  const rpc = jsonRpc(rpcUrl);
  const operatorWallet = new NonceManager(new Wallet(accounts[0]!.privateKey, provider));
  mkdirSync(opts.dir, { recursive: true });
  const deploymentFile = join(opts.dir, 'deployment.json');
  const deployment = await deploySettlement({
    signer: operatorWallet,
    rpcUrl,
    out: deploymentFile,
    ...(opts.settlementParams ? { params: opts.settlementParams } : {}),
  });
  log(`settlement contract ${deployment.address}`);
  const operator = SettlementClient.fromDeployment(deployment, operatorWallet);

  const devices: Device[] = [];
  const closers: (() => Promise<void>)[] = [];
  const fund = parseEther(opts.fundEther ?? '100');
  const timeScale = opts.timeScale ?? 60;

  async function device(
    role: Device['role'],
    name: string,
    account: { address: string; privateKey: string },
    extra: Record<string, unknown>,
    profile?: string,
    chargerKind: NonNullable<StationSpec['charger']> = 'sim-control',
  ): Promise<Device> {
    const dataDir = join(opts.dir, name.toLowerCase());
    const keystore = join(dataDir, 'key.json');
    await createKeystore(keystore, SIM_PASSWORD, { privateKey: account.privateKey, scryptN: SIM_SCRYPT_N });
    if (role !== 'edge') await rpc.send('anvil_setBalance', [account.address, `0x${fund.toString(16)}`]);
    const controlPort = 0;
    const d: Device = {
      name,
      role,
      controlPort,
      address: account.address.toLowerCase(),
      configPath: join(dataDir, 'agent.config.json'),
      dataDir,
    };
    let meterConfig: Record<string, unknown> | undefined;
    if (profile) {
      if (opts.meters === 'rtu') {
        d.pty = await openPtyPair();
        d.meter = await startSimMeter({ profile, rtu: { path: d.pty.slave, baudRate: 19200 } });
        meterConfig = {
          profile,
          unitId: d.meter.unitId,
          transport: { kind: 'rtu', port: d.pty.master, baudRate: 19200 },
        };
        closers.push(async () => {
          await d.meter!.close();
          await d.pty!.close();
        });
      } else {
        d.meter = await startSimMeter({ profile, tcp: { port: 0 } });
        meterConfig = {
          profile,
          unitId: d.meter.unitId,
          transport: { kind: 'tcp', host: '127.0.0.1', port: d.meter.port },
        };
        closers.push(() => d.meter!.close());
      }
      // The charge curve runs `timeScale` times faster than the wall clock.
      d.meter.startCharging(1, { timeScale });
      d.meter.stopCharging();
      d.meter.model.linked = true;
      // The plausibility check bounds energy by power × time; sim time runs `timeScale` times faster.
      Object.assign(meterConfig, {
        pollMs: 100,
        timeoutMs: 1000,
        retries: 2,
        plausibility: { maxPowerW: 25_000 * timeScale },
      });
    }
    const chargerConfig = profile
      ? await simCharger(d, role === 'hcs' ? chargerKind : 'sim-control')
      : undefined;
    const config = {
      role,
      name,
      dataDir: '.',
      keystore: { path: 'key.json', passwordEnv: 'P2PEV_KEY_PASSWORD' },
      chain: { rpcUrl, deploymentFile, confirmations: 1 },
      mqtt: { url: brokerUrl },
      ...(meterConfig ? { meter: meterConfig } : {}),
      ...(chargerConfig ? { charger: chargerConfig } : {}),
      control: { port: controlPort },
      log: { level: 'info' },
      // Receipts while charging, on the sim's clock: 500 Wh, or the minute scaled by `timeScale`.
      receipts: { wh: 500, intervalMs: Math.max(500, Math.round(60_000 / timeScale)), graceMs: 1000 },
      ...extra,
      ...(opts.overrides ?? {}),
    };
    writeFileSync(d.configPath, `${JSON.stringify(config, null, 2)}\n`);
    return d;
  }

  /** The station's simulated charger and the agent's `charger` config for it. */
  async function simCharger(
    d: Device,
    kind: NonNullable<StationSpec['charger']>,
  ): Promise<Record<string, unknown>> {
    if (kind === 'ocpp') {
      const port = await freePort();
      // Security profile 1: the wallbox sends a password the agent reads from a file.
      const password = randomBytes(12).toString('base64url');
      writeFileSync(join(d.dataDir, 'ocpp.password'), `${password}\n`, { mode: 0o600 });
      d.chargePoint = new SimOcppChargePoint({
        url: `ws://127.0.0.1:${port}`,
        identity: d.name,
        password,
        meter: d.meter!.model,
        signed: true,
        meterIntervalMs: 1000,
      });
      d.outlet = d.chargePoint;
      // It keeps trying until the agent's central system is up, as a real wallbox does.
      void d.chargePoint.start().catch(() => {});
      closers.push(() => d.chargePoint!.close());
      return {
        kind: 'ocpp',
        host: '127.0.0.1',
        port,
        chargePointId: d.name,
        passwordFile: 'ocpp.password',
        leaseS: 30,
      };
    }
    if (kind === 'modbus') {
      const rtu = opts.meters === 'rtu';
      const profile = opts.modbusProfile ?? (rtu ? 'heidelberg-ec' : 'phoenix-ev-eth');
      let transport: Record<string, unknown>;
      if (rtu) {
        const pty = await openPtyPair();
        d.wallbox = await startSimWallbox({
          profile,
          meter: d.meter!.model,
          rtu: { path: pty.slave, baudRate: 19200 },
        });
        transport = { kind: 'rtu', port: pty.master, baudRate: 19200 };
        closers.push(() => pty.close());
      } else {
        d.wallbox = await startSimWallbox({ profile, meter: d.meter!.model, tcp: { port: 0 } });
        transport = { kind: 'tcp', host: '127.0.0.1', port: d.wallbox.port };
      }
      d.outlet = d.wallbox.model;
      closers.push(() => d.wallbox!.close());
      return { kind: 'modbus', profile, transport, failsafeS: opts.chargerFailsafeS ?? 15 };
    }
    return { kind: 'sim-control' };
  }

  const edgeAccount = accounts[1]!;
  const server = opts.edge ? { server: edgeAccount.address.toLowerCase() } : {};
  const depositWei = parseEther(opts.depositEther ?? '10');
  const t0 = performance.now();
  if (opts.edge)
    devices.push(
      await device('edge', 'EDGE', edgeAccount, { edge: { batchSize: 10, batchMaxWaitMs: 1000 } }),
    );
  // The members, a few at a time (in the order given: stations, then EVs, as devices lists them).
  type MemberSpec = { account: (typeof accounts)[number] } & (
    | { role: 'hcs'; spec: StationSpec }
    | { role: 'ev'; spec: EvSpec }
  );
  const specs: MemberSpec[] = [
    ...opts.stations.map((spec, i) => ({ role: 'hcs' as const, spec, account: accounts[2 + i]! })),
    ...opts.evs.map((spec, i) => ({
      role: 'ev' as const,
      spec,
      account: accounts[2 + opts.stations.length + i]!,
    })),
  ];
  const members: Device[] = new Array(specs.length);
  await eachLimited(specs, DEVICES_AT_ONCE, async (m, i) => {
    const { spec } = m;
    members[i] =
      m.role === 'hcs'
        ? await device(
            'hcs',
            spec.name,
            m.account,
            {
              ...server,
              hcs: {
                priceWeiPerKWh: m.spec.priceWeiPerKWh.toString(),
                powerKw: m.spec.powerKw,
                latitude: spec.latitude,
                longitude: spec.longitude,
              },
            },
            spec.profile,
            m.spec.charger ?? 'sim-control',
          )
        : await device(
            'ev',
            spec.name,
            m.account,
            {
              ...server,
              ev: { latitude: spec.latitude, longitude: spec.longitude, depositWei: depositWei.toString() },
            },
            spec.profile,
          );
  });
  devices.push(...members);
  const t1 = performance.now();
  log(`${devices.length} devices in ${((t1 - t0) / 1000).toFixed(1)} s`);

  // Registration by each member (its account's first transaction), its first deposit if the world
  // makes it (the second), then the operator's verification (the paper's physical check); each
  // kind signed here and sent back to back, in blocks packed by the world's own anvil (sim/enrol.ts).
  const iface = operator.contract.interface;
  const enrol = {
    rpc,
    chainId,
    to: deployment.address,
    iface,
    // Only a node the world started is put out of automine: a node given may be shared.
    ...(anvil ? { packed: packedBlocks(rpc) } : {}),
  };
  const registrations: WorldCall[] = specs.map((m) => {
    const commitment = keccak256(toUtf8Bytes(`sim identity of ${m.spec.name}`));
    const data =
      m.role === 'ev'
        ? iface.encodeFunctionData('registerEV', [commitment])
        : iface.encodeFunctionData('registerHCS', [
            commitment,
            Math.round(m.spec.latitude * 1e6),
            Math.round(m.spec.longitude * 1e6),
            m.spec.priceWeiPerKWh,
            Math.round(m.spec.powerKw * 1000),
            keccak256(toUtf8Bytes(m.spec.name)),
          ]);
    return { from: m.account, nonce: 0n, data, member: m.account.address };
  });
  // Stations and cars call different functions (different gas): one lot each.
  await sendAndConfirm(
    registrations.filter((_, i) => specs[i]!.role === 'hcs'),
    { ...enrol, event: 'MemberRegistered' },
  );
  await sendAndConfirm(
    registrations.filter((_, i) => specs[i]!.role === 'ev'),
    { ...enrol, event: 'MemberRegistered' },
  );
  const t2 = performance.now();
  if (opts.depositsByWorld && depositWei > 0n)
    await sendAndConfirm(
      specs
        .filter((m) => m.role === 'ev')
        .map((m) => ({
          from: m.account,
          nonce: 1n,
          value: depositWei,
          data: iface.encodeFunctionData('deposit', []),
          member: m.account.address,
        })),
      { ...enrol, event: 'Deposited' },
    );
  const t3 = performance.now();
  const operatorAccount = accounts[0]!;
  const firstNonce = BigInt(
    (await rpc.send('eth_getTransactionCount', [operatorAccount.address, 'pending'])) as string,
  );
  await sendAndConfirm(
    specs.map((m, i) => ({
      from: operatorAccount,
      nonce: firstNonce + BigInt(i),
      data: iface.encodeFunctionData('verify', [m.account.address]),
      member: m.account.address,
    })),
    { ...enrol, event: 'MemberStatusChanged' },
  );
  // The operator's nonce manager counts from the node again (its next transaction follows these).
  operatorWallet.reset();
  const t4 = performance.now();
  const buildSeconds = {
    devices: round1((t1 - t0) / 1000),
    registrations: round1((t2 - t1) / 1000),
    deposits: round1((t3 - t2) / 1000),
    verifications: round1((t4 - t3) / 1000),
  };
  log(
    `${specs.length} members registered and verified: ${Object.entries(buildSeconds)
      .map(([k, v]) => `${k} ${v} s`)
      .join(', ')}`,
  );
  const physics = setInterval(() => cables(devices), 20);
  physics.unref();

  return {
    ...(anvil ? { anvil } : {}),
    rpcUrl,
    ...(broker ? { broker } : {}),
    brokerUrl,
    deployment,
    deploymentFile,
    operator,
    devices,
    buildSeconds,
    async close() {
      clearInterval(physics);
      for (const c of closers.reverse()) await c().catch(() => {});
      await broker?.close().catch(() => {});
      provider.destroy();
      await anvil?.stop();
    },
  };
}

/**
 * The charging cables: current flows through an EV's meter and its station's only while the EV is
 * plugged into that station (its plug registers name it) and switched on, and the station's
 * charger offers power — its simulated wallbox (OCPP or Modbus), or its meter's own switch. So a
 * station that stops, or dies, stops the EV's energy too, as a real charge point would; and an EV
 * that stops is a plug-out the station's charger sees.
 */
/** Share of the station's energy that reaches the car (the EV agent asks for its kW × this, agent/roles/ev.ts). */
const CABLE_EFFICIENCY = 0.99;

/**
 * The car holding each station's cable. One cable, one car: a second car that switches on
 * "plugged into" a station already charging another (an EV that consented after the station had
 * dropped its offer and taken the next car) gets nothing, as it would in a car park. Without this
 * both cars metered the one station's energy, and the chaos run counted the second as lost.
 */
const cableHolders = new WeakMap<Device, SimMeterModel>();

export function cables(devices: Device[]): void {
  const stations = new Map(devices.filter((d) => d.role === 'hcs' && d.meter).map((d) => [d.address, d]));
  // The car plugged into each station and switched on (it takes current): the one already there first.
  const carAt = new Map<string, SimMeterModel>();
  for (const [address, d] of stations) {
    const held = cableHolders.get(d);
    if (held?.switchedOn && held.pluggedTo === address) carAt.set(address, held);
    else cableHolders.delete(d);
  }
  for (const ev of devices) {
    if (ev.role !== 'ev' || !ev.meter) continue;
    const m = ev.meter.model;
    const station = stations.get(m.pluggedTo);
    if (m.switchedOn && station && !carAt.has(m.pluggedTo)) {
      carAt.set(m.pluggedTo, m);
      cableHolders.set(station, m);
    }
  }
  const flowing = new Map<string, { kw: number; limited: boolean }>();
  for (const [address, d] of stations) {
    const m = d.meter!.model;
    const car = carAt.get(address);
    let kw: number;
    if (d.outlet) {
      d.outlet.evPlugged = car !== undefined;
      // What flows is the lower of what the charger offers and what the car takes (plus the cable's loss).
      kw = car ? Math.min(d.outlet.offeringKw, car.chargeKwSetting / CABLE_EFFICIENCY) : 0;
    } else kw = m.switchedOn && car ? m.chargeKwSetting : 0;
    flowing.set(address, { kw, limited: d.outlet !== undefined });
    if (kw > 0 && (!m.charging || Math.abs(m.chargeKwSetting - kw) > 0.05)) m.startCharging(kw);
    else if (kw <= 0 && m.charging) m.stopCharging();
  }
  for (const ev of devices) {
    if (ev.role !== 'ev' || !ev.meter) continue;
    const m = ev.meter.model;
    const at = flowing.get(m.pluggedTo);
    const flows = m.switchedOn && at !== undefined && at.kw > 0 && carAt.get(m.pluggedTo) === m;
    const kw = at?.limited ? Math.min(m.chargeKwSetting, at.kw * CABLE_EFFICIENCY) : m.chargeKwSetting;
    if (flows && (!m.charging || Math.abs(m.chargeKwSetting - kw) > 0.05)) m.startCharging(kw);
    else if (!flows && m.charging) m.stopCharging();
  }
}
