/**
 * `npm run bench:charger` — what switching costs and how long a dead agent leaves power on, with
 * the real drivers against the simulated chargers: an OCPP 1.6J charge point (ocpp-rpc client,
 * loopback WebSocket) and a Heidelberg Energy Control on Modbus RTU over a socat pty.
 *
 * - enable → charging: RemoteStartTransaction to the charge point's Charging status (OCPP), the
 *   current write to the wallbox offering it (Modbus); p50/max over the cycles.
 * - a state read (the agent's per-tick charger poll).
 * - failsafe: from the agent's last word (the OCPP lease renewal, the last Modbus request) to the
 *   charger offering 0 A, with leaseS = 10 and failsafeS = 3 (the defaults are 60 and 15).
 *
 * Prints a table, then one JSON object as the last line. Figures only: nothing here asserts timing.
 */
import { ModbusCharger } from '../drivers/chargers/modbus.js';
import { OcppCharger } from '../drivers/chargers/ocpp.js';
import { summarize } from '../drivers/stats.js';
import { startSimWallbox } from '../sim/charger/modbus.js';
import { SimOcppChargePoint } from '../sim/charger/ocpp.js';
import { SimMeterModel } from '../sim/meter/model.js';
import { openPtyPair } from '../sim/pty.js';

const CYCLES = Number(process.env.BENCH_CYCLES ?? 20);
const LEASE_S = 10;
const FAILSAFE_S = 3;

const until = async (probe: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<number> => {
  const start = performance.now();
  while (!(await probe())) {
    if (performance.now() - start > timeoutMs) throw new Error('bench: condition not met');
    await new Promise((r) => setTimeout(r, 5));
  }
  return performance.now() - start;
};

async function ocpp() {
  const cs = new OcppCharger({ host: '127.0.0.1', port: 0, chargePointId: 'BENCH', leaseS: LEASE_S });
  await cs.open();
  const cp = new SimOcppChargePoint({
    url: `ws://127.0.0.1:${cs.port}`,
    identity: 'BENCH',
    meter: new SimMeterModel({ profile: 'sdm630' }),
  });
  await cp.start();
  cp.evPlugged = true;
  await until(async () => cs.connected() && (await cs.state()).status === 'plugged');
  const enable: number[] = [];
  const reads: number[] = [];
  for (let i = 1; i <= CYCLES; i++) {
    const t0 = performance.now();
    await cs.enable(16, String(i));
    await until(async () => (await cs.state()).status === 'charging');
    enable.push(performance.now() - t0);
    const r0 = performance.now();
    await cs.state();
    reads.push(performance.now() - r0);
    await cs.disable();
    await until(() => cs.activeTransaction() === undefined);
  }
  // The agent dies right after a renewal: nobody renews the lease again.
  await cs.enable(16, String(CYCLES + 1));
  await until(() => cp.offeringKw > 0);
  await cs.setCurrent(16);
  const failsafeMs = await until(() => cp.offeringKw === 0, (LEASE_S + 10) * 1000);
  await cp.close();
  await cs.close();
  return { enable: summarize(enable), read: summarize(reads), failsafeS: failsafeMs / 1000 };
}

async function modbus() {
  const pty = await openPtyPair();
  const wb = await startSimWallbox({ profile: 'heidelberg-ec', rtu: { path: pty.slave, baudRate: 19200 } });
  const charger = new ModbusCharger({
    profile: 'heidelberg-ec',
    transport: { kind: 'rtu', port: pty.master, baudRate: 19200, parity: 'even' },
    failsafeS: FAILSAFE_S,
  });
  await charger.open();
  wb.model.evPlugged = true;
  const enable: number[] = [];
  const reads: number[] = [];
  for (let i = 1; i <= CYCLES; i++) {
    const t0 = performance.now();
    await charger.enable(16, String(i));
    enable.push(performance.now() - t0);
    const r0 = performance.now();
    await charger.state();
    reads.push(performance.now() - r0);
    await charger.disable();
  }
  await charger.enable(16, 'last');
  await charger.keepAlive(); // the agent's last word
  const failsafeMs = await until(() => wb.model.offeringKw === 0, (FAILSAFE_S + 10) * 1000);
  await charger.close();
  await wb.close();
  await pty.close();
  return { enable: summarize(enable), read: summarize(reads), failsafeS: failsafeMs / 1000 };
}

const [o, m] = await Promise.all([ocpp(), modbus()]);
const fmt = (x: number) => x.toFixed(2).padStart(8);
console.log('charger                         enable p50 ms  max ms  read p50 ms  failsafe s (configured)');
console.log(
  `OCPP 1.6J (loopback)            ${fmt(o.enable.p50)} ${fmt(o.enable.max)} ${fmt(o.read.p50)}     ${o.failsafeS.toFixed(2)} (${LEASE_S})`,
);
console.log(
  `Heidelberg EC (RTU pty, 19200)  ${fmt(m.enable.p50)} ${fmt(m.enable.max)} ${fmt(m.read.p50)}     ${m.failsafeS.toFixed(2)} (${FAILSAFE_S})`,
);
console.log(
  JSON.stringify({
    cycles: CYCLES,
    ocppEnableP50Ms: o.enable.p50,
    ocppEnableMaxMs: o.enable.max,
    ocppReadP50Ms: o.read.p50,
    ocppFailsafeS: o.failsafeS,
    ocppLeaseS: LEASE_S,
    modbusEnableP50Ms: m.enable.p50,
    modbusEnableMaxMs: m.enable.max,
    modbusReadP50Ms: m.read.p50,
    modbusFailsafeS: m.failsafeS,
    modbusWatchdogS: FAILSAFE_S,
  }),
);
process.exit(0);
