/**
 * The OCPP 1.6J central system against an independent charge point: a raw WebSocket client
 * written in the test from the OCPP-J specification (test/helpers/raw-ocpp.ts), then the sim's
 * library-based charge point for the lease and reconnects.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { OcppCharger } from '../drivers/chargers/ocpp.js';
import { ChargerError } from '../drivers/chargers/types.js';
import { SimOcppChargePoint } from '../sim/charger/ocpp.js';
import { waitFor } from '../sim/meter/testing.js';
import { RawChargePoint } from './helpers/raw-ocpp.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function central(opts: Partial<ConstructorParameters<typeof OcppCharger>[0]> = {}) {
  const cs = new OcppCharger({ host: '127.0.0.1', port: 0, chargePointId: 'CP1', leaseS: 60, ...opts });
  await cs.open();
  cleanups.push(() => cs.close());
  return { cs, url: `ws://127.0.0.1:${cs.port}` };
}

async function rawCp(url: string, id = 'CP1', password?: string) {
  const cp = await RawChargePoint.connect(url, id, password);
  cleanups.push(() => cp.close());
  return cp;
}

// biome-ignore lint/suspicious/noExplicitAny: a JSON payload as received
type Schedule = any;

const boot = {
  chargePointVendor: 'RawVendor',
  chargePointModel: 'RawModel',
  chargePointSerialNumber: 'SN-1',
  firmwareVersion: '9.9',
};

describe('OCPP 1.6J central system, raw OCPP-J charge point', () => {
  it('boots, reports plug state, runs a remote-started transaction with the session as idTag, keeps OCMF', async () => {
    const { cs, url } = await central();
    const cp = await rawCp(url);
    const b = await cp.call('BootNotification', boot);
    expect(b.status).toBe('Accepted');
    expect(typeof b.interval).toBe('number');
    expect(typeof (await cp.call('Heartbeat', {})).currentTime).toBe('string');
    // The central system asks for the current state on connect (TriggerMessage).
    await waitFor(() => cp.triggered.length === 2);
    expect(cp.triggered).toEqual(['StatusNotification', 'MeterValues']);
    await cp.call('StatusNotification', { connectorId: 1, errorCode: 'NoError', status: 'Available' });
    expect((await cs.state()).status).toBe('unplugged');
    await cp.call('StatusNotification', { connectorId: 1, errorCode: 'NoError', status: 'Preparing' });
    expect((await cs.state()).status).toBe('plugged');
    expect(await cs.identity()).toEqual({
      vendor: 'RawVendor',
      model: 'RawModel',
      serial: 'SN-1',
      firmware: '9.9',
    });

    const enabling = cs.enable(16, '7');
    const start = await cp.expectCall('RemoteStartTransaction');
    expect(start.payload.idTag).toBe('7');
    const profile = start.payload.chargingProfile as Schedule;
    expect(profile.chargingProfilePurpose).toBe('TxProfile');
    expect(profile.chargingSchedule.chargingRateUnit).toBe('A');
    expect(profile.chargingSchedule.chargingSchedulePeriod).toEqual([
      { startPeriod: 0, limit: 16 },
      { startPeriod: 60, limit: 0 },
    ]);
    cp.reply(start.id, { status: 'Accepted' });
    await enabling;

    expect(((await cp.call('Authorize', { idTag: '7' })).idTagInfo as { status: string }).status).toBe(
      'Accepted',
    );
    expect(((await cp.call('Authorize', { idTag: 'stranger' })).idTagInfo as { status: string }).status).toBe(
      'Invalid',
    );
    const tx = await cp.call('StartTransaction', {
      connectorId: 1,
      idTag: '7',
      meterStart: 1000,
      timestamp: new Date().toISOString(),
    });
    expect(tx).toEqual({ transactionId: 7, idTagInfo: { status: 'Accepted' } });
    await cp.call('StatusNotification', { connectorId: 1, errorCode: 'NoError', status: 'Charging' });
    const ocmf = 'OCMF|{"FV":"1.0","RD":[{"TX":"B","RV":1.0}]}|{"SD":"AB"}';
    await cp.call('MeterValues', {
      connectorId: 1,
      transactionId: 7,
      meterValue: [
        {
          timestamp: new Date().toISOString(),
          sampledValue: [
            {
              value: '1.5',
              unit: 'kWh',
              measurand: 'Energy.Active.Import.Register',
              context: 'Sample.Periodic',
            },
            { value: ocmf, format: 'SignedData', context: 'Transaction.Begin' },
          ],
        },
      ],
    });
    const st = await cs.state();
    expect(st).toMatchObject({ status: 'charging', energyWh: 1500, enabled: true, currentLimitA: 16 });
    expect(cs.signedValues('7')).toEqual([
      expect.objectContaining({ format: 'OCMF', data: ocmf, context: 'Transaction.Begin', sessionId: '7' }),
    ]);

    // A new limit goes as SetChargingProfile for the running transaction.
    const limiting = cs.setCurrent(10);
    const set = await cp.expectCall('SetChargingProfile');
    expect((set.payload.csChargingProfiles as Schedule).transactionId).toBe(7);
    expect(
      (set.payload.csChargingProfiles as Schedule).chargingSchedule.chargingSchedulePeriod[0].limit,
    ).toBe(10);
    cp.reply(set.id, { status: 'Accepted' });
    await limiting;

    const stopping = cs.disable();
    const stop = await cp.expectCall('RemoteStopTransaction');
    expect(stop.payload).toEqual({ transactionId: 7 });
    cp.reply(stop.id, { status: 'Accepted' });
    await stopping;
    await cp.call('StopTransaction', {
      transactionId: 7,
      meterStop: 2000,
      timestamp: new Date().toISOString(),
      reason: 'Remote',
    });
    expect(cs.activeTransaction()).toBeUndefined();

    const avail = cs.setAvailable(false);
    const ca = await cp.expectCall('ChangeAvailability');
    expect(ca.payload).toEqual({ connectorId: 1, type: 'Inoperative' });
    cp.reply(ca.id, { status: 'Accepted' });
    expect(await avail).toBe('Accepted');
  });

  it('a transaction stopped because the car left reads as unplugged before the status arrives', async () => {
    const { cs, url } = await central();
    const cp = await rawCp(url);
    await cp.call('BootNotification', boot);
    await cp.call('StatusNotification', { connectorId: 1, errorCode: 'NoError', status: 'Preparing' });
    const enabling = cs.enable(16, '8');
    const start = await cp.expectCall('RemoteStartTransaction');
    cp.reply(start.id, { status: 'Accepted' });
    await enabling;
    await cp.call('StartTransaction', {
      connectorId: 1,
      idTag: '8',
      meterStart: 0,
      timestamp: new Date().toISOString(),
    });
    await cp.call('StatusNotification', { connectorId: 1, errorCode: 'NoError', status: 'Charging' });
    // The wallbox reports the stop first; its StatusNotification (Available) follows later.
    await cp.call('StopTransaction', {
      transactionId: 8,
      meterStop: 700,
      timestamp: new Date().toISOString(),
      reason: 'EVDisconnected',
    });
    expect(await cs.state()).toMatchObject({ status: 'unplugged', enabled: false });
  });

  it('refuses an unknown charge point id, and a wrong basic-auth password (security profile 1)', async () => {
    const { url } = await central({ password: 'correct horse' });
    await expect(RawChargePoint.connect(url, 'INTRUDER', 'correct horse')).rejects.toThrow('HTTP 404');
    await expect(RawChargePoint.connect(url, 'CP1', 'wrong')).rejects.toThrow('HTTP 401');
    await expect(RawChargePoint.connect(url, 'CP1')).rejects.toThrow('HTTP 401');
    const cp = await rawCp(url, 'CP1', 'correct horse');
    expect((await cp.call('BootNotification', boot)).status).toBe('Accepted');
  });

  it('validates calls against the OCPP 1.6 schemas (strict mode)', async () => {
    const { url } = await central();
    const cp = await rawCp(url);
    await expect(cp.call('BootNotification', { chargePointVendor: 'x' })).rejects.toMatchObject({
      code: expect.stringMatching(
        /OccurrenceConstraintViolation|OccurenceConstraintViolation|FormationViolation/,
      ),
    });
    await expect(
      cp.call('StatusNotification', { connectorId: 1, errorCode: 'NoError', status: 'Dancing' }),
    ).rejects.toThrow('CALLERROR');
  });

  it('answers each kind of malformed call with the CallError OCPP-J 1.6 names for it', async () => {
    const { url } = await central();
    const cp = await rawCp(url);
    const code = (action: string, payload: Record<string, unknown>) =>
      cp.call(action, payload).then(
        () => 'accepted',
        (err: { code: string }) => err.code,
      );
    const start = { connectorId: 1, idTag: '42', meterStart: 0, timestamp: new Date().toISOString() };
    // The codes as OCPP-J 1.6 errata v1.0 §5 spells them (the specification's table had
    // "OccurenceConstraintViolation" and "FormatViolation"); ocpp-rpc answers so for ocpp1.6.
    // A required field missing.
    expect(await code('StartTransaction', { connectorId: 1, idTag: '42', meterStart: 0 })).toBe(
      'OccurrenceConstraintViolation',
    );
    // A field the message does not have.
    expect(await code('StartTransaction', { ...start, colour: 'red' })).toBe('PropertyConstraintViolation');
    // A field of the wrong type.
    expect(await code('StartTransaction', { ...start, meterStart: '0' })).toBe('TypeConstraintViolation');
    // Too long (idTag is CiString20Type), not a date-time, not in the enumeration.
    expect(await code('Authorize', { idTag: 'x'.repeat(21) })).toBe('FormationViolation');
    expect(await code('StartTransaction', { ...start, timestamp: 'yesterday' })).toBe('FormationViolation');
    expect(
      await code('StatusNotification', { connectorId: 1, errorCode: 'NoError', status: 'Dancing' }),
    ).toBe('FormationViolation');
    // An action the central system does not implement.
    expect(await code('SignCertificate', { csr: 'x' })).toBe('NotImplemented');
    // And the well-formed call still goes through.
    expect(await code('Authorize', { idTag: '42' })).toBe('accepted');
  });

  it('a wallbox rejecting RemoteStartTransaction fails enable with what to check', async () => {
    const { cs, url } = await central();
    const cp = await rawCp(url);
    await cp.call('BootNotification', boot);
    const enabling = cs.enable(16, '8');
    const start = await cp.expectCall('RemoteStartTransaction');
    cp.reply(start.id, { status: 'Rejected' });
    await expect(enabling).rejects.toThrow(ChargerError);
    await expect(enabling).rejects.toThrow(/rejected RemoteStartTransaction.*check the connector/);
  });

  it('no wallbox connected: the error names the URL to configure', async () => {
    const { cs } = await central();
    await expect(cs.enable(16, '1')).rejects.toThrow(
      /set its OCPP backend URL to ws:\/\/<this host>:\d+\/CP1/,
    );
  });

  it('after a restart, a transaction the wallbox still runs without an open session is stopped', async () => {
    const { cs, url } = await central();
    const cp = await rawCp(url);
    // The agent restarted with no charging session: it says so (disable), before the wallbox tells.
    await cs.disable();
    await cp.call('StatusNotification', { connectorId: 1, errorCode: 'NoError', status: 'Charging' });
    await cp.call('MeterValues', {
      connectorId: 1,
      transactionId: 42,
      meterValue: [{ timestamp: new Date().toISOString(), sampledValue: [{ value: '5000' }] }],
    });
    const stop = await cp.expectCall('RemoteStopTransaction');
    expect(stop.payload).toEqual({ transactionId: 42 });
    cp.reply(stop.id, { status: 'Accepted' });
  });

  it('after a restart, the transaction of the session that is still open is adopted, not restarted', async () => {
    const { cs, url } = await central();
    const cp = await rawCp(url);
    await cp.call('MeterValues', {
      connectorId: 1,
      transactionId: 42,
      meterValue: [{ timestamp: new Date().toISOString(), sampledValue: [{ value: '5000' }] }],
    });
    const enabling = cs.enable(16, '42');
    const set = await cp.expectCall('SetChargingProfile');
    cp.reply(set.id, { status: 'Accepted' });
    await enabling;
    expect(cs.activeTransaction()?.idTag).toBe('42');
  });
});

describe('OCPP 1.6J central system, simulated charge point (ocpp-rpc client)', () => {
  it('the TxProfile lease drops the wallbox to 0 A when it is not renewed; a reconnect keeps the transaction', async () => {
    const { cs, url } = await central({ leaseS: 1 });
    const cp = new SimOcppChargePoint({ url, identity: 'CP1', signed: true });
    cleanups.push(() => cp.close());
    await cp.start();
    await waitFor(() => cs.bootInfo);
    cp.evPlugged = true;
    await waitFor(async () => (await cs.state()).status === 'plugged');
    await cs.enable(16, '3');
    await waitFor(() => cp.offeringKw > 0);
    expect(cp.tx?.idTag).toBe('3');
    // Nobody renews the lease: the schedule's second period (0 A) takes over.
    await waitFor(() => cp.offeringKw === 0, 5_000);
    await cs.keepAlive();
    expect(cp.offeringKw).toBeGreaterThan(0);

    await cp.disconnect();
    await waitFor(() => !cs.connected());
    await cp.reconnect();
    await waitFor(() => cs.connected());
    expect(cs.activeTransaction()?.id).toBe(3);
    cp.evPlugged = false;
    await waitFor(async () => (await cs.state()).status === 'unplugged');
    expect(cs.activeTransaction()).toBeUndefined();
    expect(cs.signedValues('3').map((v) => v.context)).toEqual(['Transaction.Begin', 'Transaction.End']);
  });
});
