/**
 * The operator's view of running agents, in the sim world (anvil, mosquitto, simulated meters,
 * an edge, an HCS and an EV): `p2pev status` and `p2pev doctor` against the running agents,
 * Home Assistant discovery seen by `mosquitto_sub`, OCMF export of real charges checked by an
 * independent verifier, and a clock step in the middle of a charge.
 */
import { execFile, spawn } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { computeAddress } from 'ethers';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Agent } from '../agent/core/runtime.js';
import type { SessionRecord } from '../agent/core/session.js';
import { freePort } from '../sim/chain.js';
import { SIM_PASSWORD, type World } from '../sim/world.js';
import { checkTransaction, parseOcmf, verifyOcmf } from './helpers/ocmf-verifier.js';
import { device, smallWorld, startAgent, tempDir, waitFor, sessionDone } from './helpers/world.js';

const BIN = new URL('../bin/p2pev.mjs', import.meta.url).pathname;

function cli(args: string[], env: Record<string, string> = {}) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { env: { ...process.env, ...env }, timeout: 60_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

/** Retained messages under `topic` as mosquitto_sub (an independent MQTT client) sees them. */
function mosquittoSub(port: number, topic: string): Promise<Map<string, string>> {
  return new Promise((resolve, reject) => {
    const child = spawn('mosquitto_sub', [
      '-h',
      '127.0.0.1',
      '-p',
      String(port),
      '-t',
      topic,
      '-v',
      '--retained-only',
      '-W',
      '2',
    ]);
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.once('error', reject);
    child.once('exit', () => {
      const map = new Map<string, string>();
      for (const line of out.split('\n').filter(Boolean)) {
        const at = line.indexOf(' ');
        map.set(line.slice(0, at), line.slice(at + 1));
      }
      resolve(map);
    });
  });
}

describe('operating a charge point', () => {
  let world: World;
  const agents = new Map<string, Agent>();
  let hcsConfig: string;

  // Each search from a slightly different spot: an identical search gets a byte-identical signed
  // suggestion (deterministic signatures, no nonce), which the EV's bus drops as a replay.
  let searches = 0;
  const where = () => ({ latitude: 52.521 + ++searches * 1e-4, longitude: 13.41 });

  async function charge(targetWh: number): Promise<SessionRecord> {
    const ev = agents.get('EV1')!;
    const { id } = (await ev.control('charge', { targetWh, ...where() })) as { id: string };
    return sessionDone(ev, id, 60_000);
  }

  beforeAll(async () => {
    world = await smallWorld({ edge: true, broker: 'mosquitto' });
    hcsConfig = device(world, 'HCS1').configPath;
    const cfg = JSON.parse(readFileSync(hcsConfig, 'utf8'));
    // Home Assistant's broker is named, never assumed (here the same mosquitto, for the test).
    cfg.homeassistant = { url: cfg.mqtt.url, intervalS: 5 };
    writeFileSync(hcsConfig, JSON.stringify(cfg, null, 2));
    for (const d of world.devices) agents.set(d.name, await startAgent(d));
  }, 120_000);

  afterAll(async () => {
    for (const a of agents.values()) await a.stop();
    await world?.close();
  });

  it('p2pev status reads the running agent: role, address, meter reading, balance', async () => {
    const hcs = agents.get('HCS1')!;
    await waitFor('first telemetry sample', () => hcs.ops?.telemetry.reading);
    const json = await cli(['status', '--config', hcsConfig, '--json']);
    expect(json.code, json.stderr).toBe(0);
    const s = JSON.parse(json.stdout);
    expect(s.role).toBe('hcs');
    expect(s.address).toBe(hcs.address);
    expect(s.broker.connected).toBe(true);
    expect(s.chain.reachable).toBe(true);
    expect(s.telemetry.reading.energyWh).toBeGreaterThanOrEqual(0);
    expect(s.telemetry.reading.voltageV).toBeGreaterThan(100);
    expect(s.meter.serial).toBe(hcs.metering!.serial);
    expect(BigInt(s.telemetry.balanceWei)).toBeGreaterThan(0n);
    expect(s.telemetry.earningsWei).toBeDefined();

    const text = await cli(['status', '--port', String(device(world, 'EDGE').controlPort)]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain('(edge)');
    expect(text.stdout).toMatch(/broker +mqtt:\/\/127\.0\.0\.1:\d+: connected/);
    expect(text.stdout).toContain('bills');

    const down = await cli(['status', '--port', String(await freePort())]);
    expect(down.code).toBe(1);
    // Under systemd the service's status; on a bench (as here, no systemd as PID 1) how to start it.
    expect(down.stderr).toContain(
      existsSync('/run/systemd/system')
        ? 'is it running? systemctl status p2pev'
        : 'is it running? no systemd here (a bench): start it with p2pev run',
    );
  }, 60_000);

  it('p2pev doctor passes on the running device and names what to fix on a broken one', async () => {
    const env = { P2PEV_KEY_PASSWORD: SIM_PASSWORD };
    const good = await cli(['doctor', '--config', hcsConfig, '--json'], env);
    const report = JSON.parse(good.stdout) as {
      ok: boolean;
      checks: { name: string; status: string; detail: string }[];
    };
    const failed = report.checks.filter((c) => c.status === 'fail');
    expect(failed, JSON.stringify(failed)).toEqual([]);
    expect(good.code).toBe(0);
    const byName = Object.fromEntries(report.checks.map((c) => [c.name, c]));
    for (const name of [
      'config',
      'keystore',
      'keystore password',
      'agent',
      'meter',
      'broker',
      'chain',
      'contract',
      'registration',
      'window',
      'disk',
      'signatures',
    ])
      expect(byName[name]?.status, name).toBe('ok');
    expect(byName.meter!.detail).toContain('read by the agent');
    expect(['ok', 'skip', 'fail']).toContain(byName.clock!.status);
    expect(good.stdout).not.toContain(SIM_PASSWORD);

    // A copy of the device with a world-readable keystore, a dead broker, no agent and no registration.
    const dir = tempDir('doctor');
    const cfg = JSON.parse(readFileSync(hcsConfig, 'utf8'));
    copyFileSync(join(device(world, 'HCS1').dataDir, 'key.json'), join(dir, 'key.json'));
    chmodSync(join(dir, 'key.json'), 0o644);
    Object.assign(cfg, { dataDir: dir, keystore: { path: join(dir, 'key.json') } });
    const closed = await freePort();
    cfg.mqtt = { url: `mqtt://127.0.0.1:${closed}` };
    cfg.control = { port: closed };
    delete cfg.homeassistant;
    // A window longer than the contract's notice: every reservation would be refused.
    cfg.hcs = { ...cfg.hcs, settlementWindowS: 200_000 };
    writeFileSync(join(dir, 'agent.config.json'), JSON.stringify(cfg));
    const bad = await cli(['doctor', '--config', join(dir, 'agent.config.json'), '--timeout', '2000'], env);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/\[FAIL\] keystore .*mode 644/);
    expect(bad.stdout).toContain(`fix: chmod 600 ${join(dir, 'key.json')}`);
    expect(bad.stdout).toContain(`[FAIL] broker            mqtt://127.0.0.1:${closed}: connect ECONNREFUSED`);
    expect(bad.stdout).toMatch(
      /\[FAIL\] window +hcs.settlementWindowS 200000 s is longer than the contract's 86400 s/,
    );
    expect(bad.stdout).toMatch(
      existsSync('/run/systemd/system')
        ? /\[warn\] agent +no agent answers on [^\n]*\n +fix: systemctl start p2pev/
        : /\[warn\] agent +no agent answers on [^\n]*\n +fix: no systemd here \(a bench\): start it with p2pev run --config /,
    );
    // With no agent running, the doctor reads the meter itself.
    expect(bad.stdout).toMatch(/\[ ok \] meter +sdm630/);

    const broken = join(dir, 'broken.json');
    writeFileSync(broken, JSON.stringify({ ...cfg, role: 'hcs', hcs: undefined, colour: 'red' }));
    const invalid = await cli(['doctor', '--config', broken, '--json'], env);
    expect(invalid.code).toBe(1);
    const inv = JSON.parse(invalid.stdout);
    expect(inv.checks).toHaveLength(1);
    expect(inv.checks[0].detail).toContain('unknown key "colour"');
  }, 90_000);

  it('publishes Home Assistant discovery configs and state, retained, that mosquitto_sub sees', async () => {
    const hcs = agents.get('HCS1')!;
    const port = world.broker!.port;
    const node = `p2pev_${hcs.address.slice(2)}`;
    const configs = await waitFor('discovery configs', async () => {
      const m = await mosquittoSub(port, 'homeassistant/#');
      return m.size >= 6 ? m : undefined;
    });
    const energy = JSON.parse(configs.get(`homeassistant/sensor/${node}/energy_kwh/config`)!);
    expect(energy).toMatchObject({
      device_class: 'energy',
      state_class: 'total_increasing',
      unit_of_measurement: 'kWh',
      unique_id: `${node}_energy_kwh`,
      state_topic: `p2pev/ha/${node}/state`,
      availability_topic: `p2pev/ha/${node}/availability`,
    });
    expect(energy.device.identifiers).toEqual([node]);
    expect(energy.device.model).toContain('SDM630');
    const kinds = Object.fromEntries(
      [...configs].map(([t, p]) => [t.split('/')[3], JSON.parse(p) as Record<string, string>]),
    );
    expect(kinds.power_w).toMatchObject({
      device_class: 'power',
      unit_of_measurement: 'W',
      state_class: 'measurement',
    });
    expect(kinds.voltage_v).toMatchObject({ device_class: 'voltage', unit_of_measurement: 'V' });
    expect(kinds.current_a).toMatchObject({ device_class: 'current', unit_of_measurement: 'A' });
    expect(kinds.session!.value_template).toBe('{{ value_json.session }}');
    // ETH is no ISO 4217 currency: no monetary class (Home Assistant would reject the sensor).
    expect(kinds.money_eth).toMatchObject({ state_class: 'total', unit_of_measurement: 'ETH' });
    expect(kinds.money_eth!.device_class).toBeUndefined();

    const state = await mosquittoSub(port, `p2pev/ha/${node}/#`);
    expect(state.get(`p2pev/ha/${node}/availability`)).toBe('online');
    const values = JSON.parse(state.get(`p2pev/ha/${node}/state`)!);
    expect(values.energy_kwh).toBeCloseTo(hcs.ops!.telemetry.reading!.energyWh / 1000, 2);
    expect(typeof values.voltage_v).toBe('number');
    expect(values.session).toBe('idle');
    expect(values.money_eth).toBeGreaterThanOrEqual(0);
  }, 30_000);

  it('a clock step mid-charge neither ends the charge nor spoils its times', async () => {
    const ev = agents.get('EV1')!;
    const hcs = agents.get('HCS1')!;
    const realNow = Date.now.bind(Date);
    const { id } = (await ev.control('charge', { targetWh: 1500, ...where() })) as { id: string };
    await waitFor('charging', () => ev.sessions.get(id)?.state === 'charging');
    const t0Before = ev.sessions.get(id)!.t0!;
    // NTP steps the clock 10 minutes forward: far past chargeIdleMs (20 s) and reportMs (5 s).
    const stepMs = 600_000;
    const spy = vi.spyOn(Date, 'now').mockImplementation(() => realNow() + stepMs);
    try {
      const done = await sessionDone(ev, id, 60_000);
      expect(done.endStatus).toBe(1); // completed, not "timeout" (5)
      expect(done.t0).toBe(t0Before + stepMs / 1000);
      expect(done.t1! - done.t0!).toBeLessThan(120);
      expect(ev.ops!.clock.seen.jumps).toBeGreaterThanOrEqual(1);
      expect(hcs.ops!.clock.seen.totalMs).toBeGreaterThanOrEqual(stepMs - 1000);
    } finally {
      spy.mockRestore();
    }
    // And back: the step the other way is seen too.
    await waitFor('backward step seen', () => ev.ops!.clock.seen.jumps >= 2);
  }, 90_000);

  it('a clock step is seen before anything changes a session, not at the next tick', async () => {
    const hcs = agents.get('HCS1')!;
    const before = hcs.ops!.clock.seen.jumps;
    const realNow = Date.now.bind(Date);
    const spy = vi.spyOn(Date, 'now').mockImplementation(() => realNow() - 600_000);
    try {
      // What a message, a control call or a tick does runs after the step was taken into account:
      // a consent deadline it sets is in the new frame and never shifted again.
      expect(await hcs.exclusive(async () => hcs.ops!.clock.seen.jumps)).toBe(before + 1);
    } finally {
      spy.mockRestore();
    }
    expect(await hcs.exclusive(async () => hcs.ops!.clock.seen.jumps)).toBe(before + 2);
  });

  it('exports every charge as OCMF that an independent verifier accepts, numbered without gaps across a restart', async () => {
    const doneBefore = [...agents.get('HCS1')!.sessions.values()].filter((s) => s.state === 'done').length;
    await charge(800);
    // A restart of the station between two charges: the counter must go on, not start again.
    await agents.get('HCS1')!.stop();
    agents.set('HCS1', await startAgent(device(world, 'HCS1')));
    await charge(800);
    const hcs = agents.get('HCS1')!;
    await waitFor('HCS settled both', () =>
      [...hcs.sessions.values()].filter((s) => s.state === 'done').length >= doneBefore + 2
        ? true
        : undefined,
    );

    const out = await cli(['sessions', 'export', '--ocmf', '--config', hcsConfig, '--json'], {
      P2PEV_KEY_PASSWORD: SIM_PASSWORD,
    });
    expect(out.code, out.stderr).toBe(0);
    const exp = JSON.parse(out.stdout);
    expect(exp.signatureAlgorithm).toBe('ECDSA-secp256k1-SHA256');
    // The key that signs the OCMF is the station's registered on-chain account.
    expect(computeAddress(`0x${exp.publicKeyRaw}`).toLowerCase()).toBe(hcs.address);
    // The key as verifiers take it: DER SubjectPublicKeyInfo of that point (and its PEM).
    expect(exp.publicKey).toBe(`3056301006072a8648ce3d020106052b8104000a034200${exp.publicKeyRaw}`);
    expect(exp.publicKeyPem).toContain('-----BEGIN PUBLIC KEY-----');
    expect(exp.sessions.length).toBe(doneBefore + 2);
    expect(exp.gaps).toEqual([]);
    const pages: number[] = [];
    for (const s of exp.sessions) {
      const rec = [...hcs.sessions.values()].find((r) => r.txid === s.txid)!;
      const p = parseOcmf(s.ocmf);
      checkTransaction(p);
      expect(verifyOcmf(p, exp.publicKey)).toBe(true);
      pages.push(Number(p.payload.PG.slice(1)));
      expect(p.payload.PG).toBe(`T${rec.terms!.seq}`);
      expect(p.payload.RD[0]!.RV).toBe(rec.startWh);
      expect(p.payload.RD[1]!.RV).toBe(rec.endWh!);
      expect(p.payload.RD[0]!.RU).toBe('Wh');
      expect(p.payload.MS).toBe(hcs.metering!.serial);
      expect(p.payload.ZT).toBe(rec.txid);
      expect(BigInt(s.bill.amountWei)).toBeGreaterThan(0n);
      expect(s.state).toBe('done');
      // Tampering with one reading breaks the signature.
      const forged = s.ocmf.replace(`"RV":${rec.endWh}`, `"RV":${rec.endWh! + 1000}`);
      expect(forged).not.toBe(s.ocmf);
      expect(verifyOcmf(parseOcmf(forged), exp.publicKey)).toBe(false);
    }
    expect(pages).toEqual(pages.map((_, i) => i + 1));

    // The text form: one OCMF line per session, the key on stderr.
    const lines = await cli(['sessions', 'export', '--ocmf', '--config', hcsConfig], {
      P2PEV_KEY_PASSWORD: SIM_PASSWORD,
    });
    expect(lines.stdout.trim().split('\n')).toEqual(exp.sessions.map((s: { ocmf: string }) => s.ocmf));
    expect(lines.stderr).toContain(exp.publicKey);
    expect(lines.stdout + lines.stderr).not.toContain(SIM_PASSWORD);

    const evCfg = device(world, 'EV1').configPath;
    const notHcs = await cli(['sessions', 'export', '--ocmf', '--config', evCfg], {
      P2PEV_KEY_PASSWORD: SIM_PASSWORD,
    });
    expect(notHcs.code).toBe(1);
    expect(notHcs.stderr).toContain('run this on the HCS');
  }, 150_000);
});
