/**
 * Charger pieces without a whole deployment: the GPIO relay's commands (a fake process runner:
 * this machine has no GPIO chip and no gpio-sim module, so the real tools are not run), the
 * config's moved `meter.charger` key, `p2pev diag charger` (its JSON document against the
 * simulated wallboxes) and the doctor's charger check.
 */
import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { Command } from 'commander';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../agent/core/config.js';
import { checkCharger } from '../agent/ops/doctor.js';
import { formatStatus } from '../agent/ops/status.js';
import { createCharger, currentForKw, ocppPassword } from '../drivers/chargers/index.js';
import {
  GpioRelayCharger,
  gpiogetArgs,
  gpiosetArgs,
  parseGpiodVersion,
  type ProcessRunner,
} from '../drivers/chargers/gpio.js';
import { type DiagIo, registerDiagCommands } from '../drivers/cli.js';
import { startSimWallbox } from '../sim/charger/modbus.js';
import { SimOcppChargePoint } from '../sim/charger/ocpp.js';
import { freePort } from '../sim/chain.js';
import { SimMeterModel } from '../sim/meter/model.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A fake gpioset: records what was run; a holder stays alive until killed, or exits at once if told to fail. */
function fakeRunner(version: string, failHold = false) {
  const calls: { cmd: string; args: string[]; killed?: boolean }[] = [];
  const runner: ProcessRunner = {
    run: async (cmd, args) => {
      calls.push({ cmd, args });
      return version;
    },
    hold: (cmd, args) => {
      const call: { cmd: string; args: string[]; killed?: boolean } = { cmd, args };
      calls.push(call);
      const child = new EventEmitter() as EventEmitter & {
        exitCode: number | null;
        kill: () => boolean;
        stderr: EventEmitter;
      };
      child.exitCode = null;
      child.stderr = new EventEmitter();
      child.kill = () => {
        call.killed = true;
        child.exitCode = 143;
        setImmediate(() => child.emit('exit', 143));
        return true;
      };
      if (failHold)
        setImmediate(() => {
          child.stderr.emit(
            'data',
            Buffer.from('gpioset: error setting the GPIO line values: Device or resource busy'),
          );
          child.exitCode = 1;
          child.emit('exit', 1);
        });
      return child as unknown as ChildProcess;
    },
  };
  return { runner, calls };
}

describe('GPIO relay (libgpiod tools)', () => {
  it('builds gpioset/gpioget for libgpiod v1 and v2', () => {
    const o = { chip: 'gpiochip0', line: 17 };
    expect(gpiosetArgs(1, o, true)).toEqual(['--mode=signal', 'gpiochip0', '17=1']);
    expect(gpiosetArgs(1, { ...o, activeLow: true }, false)).toEqual([
      '--mode=signal',
      '--active-low',
      'gpiochip0',
      '17=0',
    ]);
    expect(gpiosetArgs(2, o, true)).toEqual(['--chip', 'gpiochip0', '17=1']);
    expect(gpiosetArgs(2, { ...o, activeLow: true }, true)).toEqual([
      '--chip',
      'gpiochip0',
      '--active-low',
      '17=1',
    ]);
    expect(gpiogetArgs(1, o)).toEqual(['gpiochip0', '17']);
    expect(gpiogetArgs(2, o)).toEqual(['--chip', 'gpiochip0', '--numeric', '17']);
    expect(parseGpiodVersion('gpioset (libgpiod) v1.6.3\nCopyright')).toBe(1);
    expect(parseGpiodVersion('gpioset (libgpiod) v2.1.3')).toBe(2);
    expect(() => parseGpiodVersion('command not found')).toThrow(/apt-get install gpiod/);
  });

  it('holds the line: off at open, on for a session, the previous holder released each time', async () => {
    const { runner, calls } = fakeRunner('gpioset (libgpiod) v1.6.3');
    const relay = new GpioRelayCharger({ chip: 'gpiochip0', line: 17 }, runner);
    await relay.open();
    expect(calls.map((c) => c.args.join(' '))).toEqual(['--version', '--mode=signal gpiochip0 17=0']);
    expect((await relay.state()).status).toBe('plugged');
    await relay.enable(16, '1');
    expect(calls[1]!.killed).toBe(true);
    expect(calls[2]!.args).toEqual(['--mode=signal', 'gpiochip0', '17=1']);
    expect(await relay.state()).toMatchObject({ status: 'charging', enabled: true, raw: 'relay on' });
    await relay.disable();
    expect(calls[2]!.killed).toBe(true);
    expect(calls[3]!.args).toEqual(['--mode=signal', 'gpiochip0', '17=0']);
    expect(relay.connected()).toBe(true);
  });

  it('a line it cannot hold is an error saying what to check', async () => {
    const { runner } = fakeRunner('gpioset (libgpiod) v2.1', true);
    const relay = new GpioRelayCharger({ chip: 'gpiochip9', line: 4 }, runner);
    await expect(relay.open()).rejects.toThrow(
      /cannot set gpiochip9 line 4 .*busy.*check the chip and line \(gpioinfo\)/,
    );
  });
});

describe('charger config', () => {
  const base = {
    role: 'hcs',
    dataDir: '.',
    keystore: { path: 'k.json' },
    chain: { rpcUrl: 'http://127.0.0.1:8545', deploymentFile: 'd.json' },
    mqtt: { url: 'mqtt://127.0.0.1' },
    hcs: { priceWeiPerKWh: '1', latitude: 0, longitude: 0 },
  };
  const meter = { profile: 'sdm630', transport: { kind: 'tcp', host: '127.0.0.1', port: 502 } };

  it('the old meter.charger key stops the agent with what to write instead', () => {
    expect(() => parseConfig({ ...base, meter: { ...meter, charger: 'sim-control' } }, '/tmp')).toThrow(
      ConfigError,
    );
    expect(() => parseConfig({ ...base, meter: { ...meter, charger: 'sim-control' } }, '/tmp')).toThrow(
      /\/meter\/charger \("sim-control"\) has moved.*"charger": \{ "kind": "sim-control" \}/,
    );
    expect(() => parseConfig({ ...base, meter: { ...meter, charger: 'none' } }, '/tmp')).toThrow(
      /"charger": \{ "kind": "none" \}/,
    );
  });

  it('charger defaults, and what each kind requires', () => {
    expect(parseConfig({ ...base, meter }, '/tmp').charger).toEqual({ kind: 'none' });
    const ocpp = parseConfig(
      { ...base, meter, charger: { kind: 'ocpp', chargePointId: 'garage-1' } },
      '/tmp',
    ).charger;
    expect(ocpp).toMatchObject({
      kind: 'ocpp',
      host: '0.0.0.0',
      port: 8887,
      connectorId: 1,
      leaseS: 60,
      maxCurrentA: 16,
      phases: 3,
    });
    expect(() => parseConfig({ ...base, meter, charger: { kind: 'ocpp' } }, '/tmp')).toThrow(
      /\/charger\/chargePointId: is required/,
    );
    expect(() =>
      parseConfig({ ...base, meter, charger: { kind: 'modbus', profile: 'heidelberg-ec' } }, '/tmp'),
    ).toThrow(/\/charger\/transport: is required/);
    expect(() =>
      parseConfig(
        { ...base, meter, charger: { kind: 'modbus', profile: 'keba', transport: { kind: 'tcp' } } },
        '/tmp',
      ),
    ).toThrow(/\/charger\/profile: "keba" is not one of/);
  });

  it('the terms power as a current per phase, never above it', () => {
    expect(currentForKw(11, 3)).toBe(15.9);
    expect(currentForKw(7.4, 1)).toBe(32.1);
    expect(currentForKw(22, 3) * 230 * 3).toBeLessThanOrEqual(22_000);
  });
});

function captureIo(): DiagIo & { stdout: string[]; stderr: string[]; exitCode: number } {
  const io = {
    stdout: [] as string[],
    stderr: [] as string[],
    exitCode: 0,
    out: (t: string) => io.stdout.push(t),
    err: (t: string) => io.stderr.push(t),
    setExitCode: (c: number) => {
      io.exitCode = c;
    },
    interrupted: () => new Promise<void>(() => {}),
  };
  return io;
}

async function diag(...args: string[]) {
  const io = captureIo();
  const program = new Command('p2pev').exitOverride();
  registerDiagCommands(program, io);
  await program.parseAsync(['node', 'p2pev', 'diag', 'charger', ...args]);
  return io;
}

describe('the OCPP basic-auth password (security profile 1)', () => {
  it('comes from an env variable or a file, never the config; a missing variable says what to do', async () => {
    process.env.P2PEV_TEST_OCPP_PW = 'from-env';
    try {
      expect(ocppPassword({ passwordEnv: 'P2PEV_TEST_OCPP_PW' })).toBe('from-env');
    } finally {
      delete process.env.P2PEV_TEST_OCPP_PW;
    }
    expect(() => ocppPassword({ passwordEnv: 'P2PEV_TEST_OCPP_PW' })).toThrow(
      /P2PEV_TEST_OCPP_PW, which is not set: set it in the service environment \(or use passwordFile\)/,
    );
    expect(ocppPassword({})).toBeUndefined();
    expect(await createCharger({ kind: 'none' })).toBeUndefined();
    expect(await createCharger({ kind: 'sim-control', maxCurrentA: 16, phases: 3 })).toBeUndefined();
  });
});

describe('p2pev diag charger', () => {
  it('Modbus: the JSON document, and start/limit/stop with their results', async () => {
    const meter = new SimMeterModel({ profile: 'sdm630', initialWh: 42_000 });
    const wb = await startSimWallbox({ profile: 'phoenix-ev-eth', meter, tcp: { port: 0 } });
    cleanups.push(() => wb.close());
    wb.model.evPlugged = true;
    const tcp = `127.0.0.1:${wb.port}`;
    const read = await diag('--profile', 'phoenix-ev-eth', '--tcp', tcp, '--json');
    const doc = JSON.parse(read.stdout[0]!);
    expect(doc).toMatchObject({
      kind: 'modbus',
      connected: true,
      vendor: 'Phoenix Contact',
      status: 'plugged',
      energyWh: 42_000,
      actions: {},
      failsafe: { configured: false },
    });
    expect(doc.model).toMatch(/EV Charge Control/);
    const start = JSON.parse(
      (await diag('--profile', 'phoenix-ev-eth', '--tcp', tcp, '--start', '--limit', '10', '--json'))
        .stdout[0]!,
    );
    expect(start.actions.start).toEqual({ ok: true, amps: 10 });
    expect(start).toMatchObject({ status: 'charging', enabled: true, currentLimitA: 10 });
    expect(wb.model.currentA).toBe(10);
    const limit = JSON.parse(
      (await diag('--profile', 'phoenix-ev-eth', '--tcp', tcp, '--limit', '3', '--json')).stdout[0]!,
    );
    expect(limit.actions.limit).toMatchObject({
      ok: false,
      amps: 3,
      error: expect.stringMatching(/below the 6 A/),
    });
    const stop = await diag('--profile', 'phoenix-ev-eth', '--tcp', tcp, '--stop');
    expect(stop.stdout.join('\n')).toMatch(/stop\s+ok/);
    expect(wb.model.enabled).toBe(false);
  });

  it('Modbus: an absent wallbox is an error saying what to check, exit code 1', async () => {
    const port = await freePort();
    const io = await diag('--profile', 'heidelberg-ec', '--tcp', `127.0.0.1:${port}`, '--json');
    const doc = JSON.parse(io.stdout[0]!);
    expect(doc.connected).toBe(false);
    expect(doc.error).toMatch(/heidelberg-ec unit 1 at Modbus TCP/);
    expect(doc.hint).toMatch(/check/);
    expect(io.exitCode).toBe(1);
  });

  it('OCPP: no wallbox within --wait says which URL to set', async () => {
    const port = await freePort();
    const io = await diag('--ocpp-listen', `127.0.0.1:${port}`, '--id', 'garage-1', '--wait', '1', '--json');
    const doc = JSON.parse(io.stdout[0]!);
    expect(doc.error).toMatch(/no wallbox connected within 1 s/);
    expect(doc.hint).toBe(
      `set its OCPP backend URL to ws://<this host>:${port}/garage-1 (OCPP 1.6J), check it reaches this host (same network, no firewall on port ${port})`,
    );
    expect(io.exitCode).toBe(1);
  });

  it('OCPP: a wallbox connects; boot information, status, a remote start and its result', async () => {
    const port = await freePort();
    const meter = new SimMeterModel({ profile: 'sdm630', initialWh: 7_000 });
    const cp = new SimOcppChargePoint({
      url: `ws://127.0.0.1:${port}`,
      identity: 'garage-1',
      meter,
      vendor: 'ACME',
      model: 'Box 11',
    });
    cleanups.push(() => cp.close());
    cp.evPlugged = true;
    const running = diag(
      '--ocpp-listen',
      `127.0.0.1:${port}`,
      '--start',
      '--limit',
      '10',
      '--unavailable',
      '--watch',
      '1',
      '--json',
    );
    void cp.start();
    const io = await running;
    const doc = JSON.parse(io.stdout[0]!);
    expect(doc).toMatchObject({
      kind: 'ocpp',
      connected: true,
      chargePointId: 'garage-1',
      vendor: 'ACME',
      model: 'Box 11',
      firmware: '1.6.0-sim',
      // Taken out of service after the start: Unavailable, which the station treats as a fault.
      status: 'fault',
      raw: 'Unavailable/NoError',
      energyWh: 7_000,
      actions: { start: { ok: true, amps: 10 }, availability: { ok: true, status: 'Accepted' } },
    });
    expect(doc.events.map((e: { event: string }) => e.event)).toContain('transaction');
    expect(io.exitCode).toBe(0);
  });
});

describe('p2pev doctor: the charger', () => {
  const cfgFor = (charger: Record<string, unknown>) =>
    parseConfig(
      {
        role: 'hcs',
        dataDir: '.',
        keystore: { path: 'k.json' },
        chain: { rpcUrl: 'http://127.0.0.1:8545', deploymentFile: 'd.json' },
        mqtt: { url: 'mqtt://127.0.0.1' },
        meter: { profile: 'sdm630', transport: { kind: 'tcp', host: '127.0.0.1', port: 502 } },
        hcs: { priceWeiPerKWh: '1', latitude: 0, longitude: 0 },
        charger,
      },
      '/tmp',
    );

  it('agent stopped: reads the wallbox and its watchdog; --active round-trips enable and disable', async () => {
    const wb = await startSimWallbox({ profile: 'heidelberg-ec', tcp: { port: 0 } });
    cleanups.push(() => wb.close());
    wb.model.evPlugged = true;
    const cfg = cfgFor({
      kind: 'modbus',
      profile: 'heidelberg-ec',
      transport: { kind: 'tcp', host: '127.0.0.1', port: wb.port },
    });
    const passive = await checkCharger(cfg, undefined);
    expect(passive.map((c) => [c.name, c.status])).toEqual([
      ['charger', 'ok'],
      ['charger failsafe', 'ok'],
    ]);
    // Read-only: the passive check wrote nothing (the watchdog is still off).
    expect(passive[1]!.detail).toMatch(/now 0 s at 0 A; the agent sets 15 s at 0 A/);
    const active = await checkCharger(cfg, undefined, { active: true });
    expect(active.find((c) => c.name === 'charger on/off')).toMatchObject({ status: 'ok' });
    expect(wb.model.enabled).toBe(false);
  });

  it('agent running: uses its status; a disconnected OCPP wallbox fails with the URL to set', async () => {
    const cfg = cfgFor({ kind: 'ocpp', port: 8887, chargePointId: 'garage-1' });
    const checks = await checkCharger(
      cfg,
      { charger: { kind: 'ocpp', connected: false, failsafe: { configured: true, detail: 'lease' } } },
      { active: true },
    );
    expect(checks[0]).toMatchObject({ name: 'charger', status: 'fail' });
    expect(checks[0]!.fix).toMatch(/ws:\/\/<this device>:8887\/garage-1/);
    expect(checks.find((c) => c.name === 'charger on/off')).toMatchObject({ status: 'skip' });
  });

  it('an HCS with no charger gets a warning', async () => {
    const checks = await checkCharger(cfgFor({ kind: 'none' }), undefined);
    expect(checks[0]).toMatchObject({ name: 'charger', status: 'warn' });
  });
});

describe('p2pev status: the charger line', () => {
  const base = {
    name: 'garage',
    role: 'hcs',
    address: '0xabc',
    uptimeS: 60,
    broker: { url: 'mqtt://x', connected: true },
    chain: { rpcUrl: 'http://x', reachable: true, contract: '0xc', chainId: 1 },
    sessions: [],
  };
  it('shows kind, state and failsafe; says when it is not connected or has no failsafe', () => {
    expect(
      formatStatus({
        ...base,
        charger: {
          kind: 'ocpp',
          connected: true,
          status: 'charging',
          raw: 'Charging/NoError',
          failsafe: { configured: true, worstCaseS: 60 },
        },
      }),
    ).toContain('charger  ocpp: charging (Charging/NoError), failsafe 60 s');
    expect(
      formatStatus({
        ...base,
        charger: { kind: 'modbus', connected: false, failsafe: { configured: false } },
      }),
    ).toContain('charger  modbus: NOT CONNECTED, NO FAILSAFE');
    expect(formatStatus({ ...base, charger: { kind: 'none' } })).not.toContain('charger');
  });
});

describe("p2pev sessions export: the wallbox's own signed values", () => {
  it("go with the session as received (OCMF from an Eichrecht wallbox), beside the station's record", async () => {
    const { Wallet } = await import('ethers');
    const { encode, signEnvelope } = await import('../protocol/index.js');
    const { DOMAIN } = await import('./fakes/context.js');
    const { exportOcmf } = await import('../agent/ops/ocmf.js');
    const station = Wallet.createRandom();
    const ev = Wallet.createRandom().address.toLowerCase();
    const hcs = station.address.toLowerCase();
    const txid = `0x${'ab'.repeat(32)}`;
    const report = signEnvelope(
      encode({
        type: 'chargeProvided',
        ev,
        hcs,
        txid,
        energyWh: 1234n,
        optional: { m: 'SN1', p: 'sdm630', s: 1000, e: 2234, t0: 1_700_000_000, t1: 1_700_000_600, st: 1 },
      }),
      station.privateKey,
      DOMAIN,
    );
    const wallboxOcmf =
      'OCMF|{"FV":"1.0","RD":[{"TX":"E","RV":2.234}]}|{"SA":"ECDSA-secp256r1-SHA256","SD":"AB"}';
    const record = {
      id: '1',
      role: 'hcs',
      state: 'done',
      deadline: 0,
      ev,
      hcs,
      terms: { seq: '1', price: '1', maxWh: 5000, settleBy: 1_700_003_600 },
      txid,
      myReport: Buffer.from(report).toString('hex'),
      chargerSigned: [wallboxOcmf],
      createdAt: 0,
      updatedAt: 0,
    } as unknown as Parameters<typeof exportOcmf>[0]['records'][number];
    const out = exportOcmf({
      records: [record],
      counter: 1n,
      domain: DOMAIN,
      address: hcs,
      privateKey: station.privateKey,
      version: 'test',
    });
    expect(out.sessions).toHaveLength(1);
    expect(out.sessions[0]!.chargerOcmf).toEqual([wallboxOcmf]);
    expect(out.sessions[0]!.ocmf).toMatch(/^OCMF\|/);
  });
});

describe('GPIO relay: the agent killed with SIGKILL releases the line', () => {
  it('the held gpioset ends when the agent process dies, with no systemd to clean up', async () => {
    const { mkdtempSync, writeFileSync, readFileSync, chmodSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { spawn } = await import('node:child_process');
    const { fileURLToPath } = await import('node:url');
    const dir = mkdtempSync(join(tmpdir(), 'p2pev-gpio-'));
    const log = join(dir, 'gpioset.log');
    // A stand-in for Debian's gpioset: reports its version, or records its pid and arguments and holds.
    writeFileSync(
      join(dir, 'gpioset'),
      `#!/bin/sh\nif [ "$1" = "--version" ]; then echo "gpioset (libgpiod) v2.1.3"; exit 0; fi\necho "$$ $*" >> ${log}\nexec sleep 1000\n`,
    );
    chmodSync(join(dir, 'gpioset'), 0o755);
    const gpio = fileURLToPath(new URL('../drivers/chargers/gpio.ts', import.meta.url));
    const agent = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        '-e',
        `const { GpioRelayCharger } = await import(${JSON.stringify(gpio)});
         const r = new GpioRelayCharger({ chip: 'gpiochip0', line: 17 });
         await r.open(); await r.enable(16, '1'); console.log('on'); setInterval(() => {}, 1000);`,
      ],
      { env: { ...process.env, PATH: `${dir}:${process.env.PATH}` }, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    cleanups.push(() => {
      agent.kill('SIGKILL');
    });
    await new Promise<void>((resolve, reject) => {
      agent.stdout!.on('data', (d: Buffer) => d.toString().includes('on') && resolve());
      agent.once('exit', (code) => reject(new Error(`the agent exited with ${code}`)));
    });
    const lines = readFileSync(log, 'utf8').trim().split('\n');
    expect(lines.map((l) => l.split(' ').slice(1).join(' '))).toEqual([
      '--chip gpiochip0 17=0',
      '--chip gpiochip0 17=1',
    ]);
    const pid = Number(lines.at(-1)!.split(' ')[0]);
    const alive = (p: number) => {
      try {
        process.kill(p, 0);
        return true;
      } catch {
        return false;
      }
    };
    expect(alive(pid)).toBe(true);
    // The "off" holder was ended when the relay switched on.
    expect(alive(Number(lines[0]!.split(' ')[0]))).toBe(false);
    agent.kill('SIGKILL');
    const { waitFor } = await import('../sim/meter/testing.js');
    await waitFor(() => !alive(pid), 10_000);
  });
});
