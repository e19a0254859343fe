/**
 * A simulated OCPP 1.6J charge point (on ocpp-rpc's client, strict mode: every call it makes and
 * every answer it gets is checked against the OCPP 1.6 schemas). It connects to the agent's
 * central system, boots, reports its connector's status as the EV plugs in and out, starts a
 * transaction on RemoteStartTransaction once an EV is plugged in, follows the TxProfile's
 * schedule (so a lease that is not renewed drops it to 0 A), sends meter values (with OCMF signed
 * values if asked), and reconnects when the connection drops. It offers power to the station's
 * simulated meter through the world (sim/world.ts).
 */
import { createSign, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { RPCClient } from 'ocpp-rpc';
import type { SimMeterModel } from '../meter/model.js';
import type { SimOutlet } from './outlet.js';

const VOLTS = 230;

interface Schedule {
  startSchedule?: string;
  chargingSchedulePeriod: { startPeriod: number; limit: number }[];
}

export interface SimOcppOptions {
  /** ws://host:port (the charge point id is appended). */
  url: string;
  identity: string;
  password?: string;
  connectorId?: number;
  phases?: 1 | 3;
  maxCurrentA?: number;
  /** The station's meter: meter values read it. */
  meter?: SimMeterModel;
  meterIntervalMs?: number;
  /** Send OCMF signed meter values at transaction begin and end (an Eichrecht wallbox). */
  signed?: boolean;
  vendor?: string;
  model?: string;
  serial?: string;
}

// ocpp-rpc's typings want every option and a promise from every handler; this is the part used here.
interface Rpc {
  state: number;
  connect(): Promise<unknown>;
  close(options?: { force?: boolean }): Promise<unknown>;
  call(method: string, params: Record<string, unknown>): Promise<unknown>;
  handle(method: string, handler: (call: { params?: Record<string, unknown> }) => unknown): void;
  handle(handler: () => unknown): void;
  on(event: string, cb: () => void): void;
}
const Client = RPCClient as unknown as new (options: Record<string, unknown>) => Rpc;

export class SimOcppChargePoint implements SimOutlet {
  private client?: Rpc;
  private pluggedIn = false;
  private pendingTag?: string;
  tx?: { id: number; idTag: string; startWh: number };
  private schedule?: Schedule;
  private available = true;
  faulted = false;
  /** A transaction ended while the car is still plugged in (status Finishing until it leaves). */
  private finished = false;
  /** Answer RemoteStartTransaction with Rejected (a fault to test). */
  rejectRemoteStart = false;
  private meterTimer?: NodeJS.Timeout;
  private readonly key: KeyObject;
  readonly log: string[] = [];
  private closed = false;
  private connecting?: Promise<void>;

  constructor(readonly opts: SimOcppOptions) {
    this.key = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
  }

  get connected(): boolean {
    return this.client !== undefined && this.client.state === 1;
  }

  private get connectorId(): number {
    return this.opts.connectorId ?? 1;
  }

  /** The limit the TxProfile's schedule gives now, A. */
  get limitA(): number {
    const max = this.opts.maxCurrentA ?? 32;
    const s = this.schedule;
    if (!s) return max;
    const elapsedS = (Date.now() - (s.startSchedule ? Date.parse(s.startSchedule) : 0)) / 1000;
    let limit = max;
    for (const p of s.chargingSchedulePeriod) if (p.startPeriod <= elapsedS) limit = p.limit;
    return Math.min(limit, max);
  }

  get offeringKw(): number {
    if (!this.tx || this.faulted || !this.available || this.limitA < 6) return 0;
    return (this.limitA * VOLTS * (this.opts.phases ?? 3)) / 1000;
  }

  get evPlugged(): boolean {
    return this.pluggedIn;
  }

  set evPlugged(v: boolean) {
    if (v === this.pluggedIn) return;
    this.pluggedIn = v;
    void this.onPlug(v).catch((err) => this.note(`plug handling failed: ${(err as Error).message}`));
  }

  private note(line: string): void {
    this.log.push(line);
    if (this.log.length > 200) this.log.shift();
  }

  private get status(): string {
    if (this.faulted) return 'Faulted';
    if (!this.available) return 'Unavailable';
    if (this.tx) return this.offeringKw > 0 ? 'Charging' : 'SuspendedEVSE';
    if (this.pluggedIn) return this.finished ? 'Finishing' : 'Preparing';
    return 'Available';
  }

  private async call(method: string, params: Record<string, unknown>): Promise<Record<string, unknown>> {
    if (!this.connected) throw new Error(`${method}: not connected`);
    this.note(`→ ${method}`);
    return (await this.client!.call(method, params)) as Record<string, unknown>;
  }

  async sendStatus(): Promise<void> {
    await this.call('StatusNotification', {
      connectorId: this.connectorId,
      errorCode: this.faulted ? 'OtherError' : 'NoError',
      status: this.status,
      timestamp: new Date().toISOString(),
    }).catch(() => {});
  }

  private async onPlug(plugged: boolean): Promise<void> {
    if (plugged) {
      await this.sendStatus();
      if (this.pendingTag) await this.startTransaction(this.pendingTag);
    } else {
      this.pendingTag = undefined;
      this.finished = false;
      if (this.tx) await this.stopTransaction('EVDisconnected');
      else await this.sendStatus();
    }
  }

  /** Connects (retrying until the central system is up), boots and reports the connector. */
  async start(): Promise<void> {
    this.closed = false;
    this.connecting ??= this.connectLoop().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async connectLoop(): Promise<void> {
    for (;;) {
      if (this.closed) return;
      const client = new Client({
        endpoint: this.opts.url,
        identity: this.opts.identity,
        protocols: ['ocpp1.6'],
        strictMode: true,
        ...(this.opts.password !== undefined ? { password: this.opts.password } : {}),
        reconnect: true,
        backoff: { initialDelay: 100, maxDelay: 1000, factor: 2, randomisationFactor: 0 },
        callTimeoutMs: 10_000,
      });
      this.handlers(client);
      try {
        await client.connect();
        this.client = client;
        client.on('open', () => void this.boot().catch(() => {}));
        await this.boot();
        return;
      } catch {
        await client.close({ force: true }).catch(() => {});
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  private async boot(): Promise<void> {
    await this.call('BootNotification', {
      chargePointVendor: this.opts.vendor ?? 'p2pev-sim',
      chargePointModel: this.opts.model ?? 'SimBox 22',
      chargePointSerialNumber: this.opts.serial ?? `SIM-${this.opts.identity}`,
      firmwareVersion: '1.6.0-sim',
    });
    await this.sendStatus();
  }

  private handlers(client: Rpc): void {
    client.handle('RemoteStartTransaction', ({ params = {} }: { params?: Record<string, unknown> }) => {
      this.note(`← RemoteStartTransaction ${String(params.idTag)}`);
      if (this.rejectRemoteStart || this.faulted || !this.available || this.tx) return { status: 'Rejected' };
      this.pendingTag = String(params.idTag);
      const profile = params.chargingProfile as { chargingSchedule: Schedule } | undefined;
      if (profile) this.schedule = profile.chargingSchedule;
      if (this.pluggedIn) setImmediate(() => void this.startTransaction(this.pendingTag!).catch(() => {}));
      return { status: 'Accepted' };
    });
    client.handle('RemoteStopTransaction', ({ params = {} }: { params?: Record<string, unknown> }) => {
      this.note(`← RemoteStopTransaction ${String(params.transactionId)}`);
      this.pendingTag = undefined;
      if (!this.tx || this.tx.id !== params.transactionId) return { status: 'Rejected' };
      setImmediate(() => void this.stopTransaction('Remote').catch(() => {}));
      return { status: 'Accepted' };
    });
    client.handle('SetChargingProfile', ({ params = {} }: { params?: Record<string, unknown> }) => {
      const p = params.csChargingProfiles as { chargingSchedule: Schedule };
      this.schedule = p.chargingSchedule;
      setImmediate(() => void this.sendStatus());
      return { status: 'Accepted' };
    });
    client.handle('ChangeAvailability', ({ params = {} }: { params?: Record<string, unknown> }) => {
      this.available = params.type === 'Operative';
      setImmediate(() => void this.sendStatus());
      return { status: 'Accepted' };
    });
    client.handle('TriggerMessage', ({ params = {} }: { params?: Record<string, unknown> }) => {
      const what = String(params.requestedMessage);
      if (what === 'StatusNotification') setImmediate(() => void this.sendStatus());
      else if (what === 'MeterValues') setImmediate(() => void this.sendMeterValues('Trigger'));
      else if (what === 'Heartbeat') setImmediate(() => void this.call('Heartbeat', {}).catch(() => {}));
      else return { status: 'NotImplemented' };
      return { status: 'Accepted' };
    });
    client.handle(() => {
      throw Object.assign(new Error('not implemented by the simulated charge point'), {
        rpcErrorCode: 'NotImplemented',
      });
    });
  }

  private energyWh(): number {
    return Math.floor(this.opts.meter?.energyWh ?? 0);
  }

  private ocmf(kind: 'B' | 'E'): string {
    const payload = JSON.stringify({
      FV: '1.0',
      GI: 'p2pev simulated charge point',
      GS: this.opts.serial ?? `SIM-${this.opts.identity}`,
      PG: `T${this.tx?.id ?? 0}`,
      ID: this.tx?.idTag,
      RD: [
        {
          TM: new Date().toISOString(),
          TX: kind,
          RV: this.energyWh() / 1000,
          RI: '1-b:1.8.0',
          RU: 'kWh',
          ST: 'G',
        },
      ],
    });
    const sign = createSign('SHA256');
    sign.update(payload);
    const sd = sign.sign(this.key).toString('hex').toUpperCase();
    return `OCMF|${payload}|${JSON.stringify({ SA: 'ECDSA-secp256r1-SHA256', SD: sd })}`;
  }

  private sampled(context: string, signedKind?: 'B' | 'E'): Record<string, string>[] {
    const values: Record<string, string>[] = [
      { value: String(this.energyWh()), context, measurand: 'Energy.Active.Import.Register', unit: 'Wh' },
      {
        value: String(Math.round(this.opts.meter?.powerW ?? 0)),
        context,
        measurand: 'Power.Active.Import',
        unit: 'W',
      },
    ];
    if (signedKind && this.opts.signed)
      values.push({
        value: this.ocmf(signedKind),
        context,
        format: 'SignedData',
        measurand: 'Energy.Active.Import.Register',
        unit: 'Wh',
      });
    return values;
  }

  private async sendMeterValues(context: string, signedKind?: 'B'): Promise<void> {
    await this.call('MeterValues', {
      connectorId: this.connectorId,
      ...(this.tx ? { transactionId: this.tx.id } : {}),
      meterValue: [{ timestamp: new Date().toISOString(), sampledValue: this.sampled(context, signedKind) }],
    }).catch(() => {});
  }

  private async startTransaction(idTag: string): Promise<void> {
    if (this.tx) return;
    this.pendingTag = undefined;
    const auth = (await this.call('Authorize', { idTag })) as { idTagInfo: { status: string } };
    if (auth.idTagInfo.status !== 'Accepted') {
      this.note(`idTag ${idTag} not authorised`);
      return;
    }
    const startWh = this.energyWh();
    const res = (await this.call('StartTransaction', {
      connectorId: this.connectorId,
      idTag,
      meterStart: startWh,
      timestamp: new Date().toISOString(),
    })) as { transactionId: number; idTagInfo: { status: string } };
    this.tx = { id: res.transactionId, idTag, startWh };
    this.finished = false;
    if (res.idTagInfo.status !== 'Accepted') {
      // StopTransactionOnInvalidId: a refused transaction ends at once.
      await this.stopTransaction('DeAuthorized');
      return;
    }
    await this.sendStatus();
    await this.sendMeterValues('Transaction.Begin', 'B');
    clearInterval(this.meterTimer);
    this.meterTimer = setInterval(
      () => void this.sendMeterValues('Sample.Periodic'),
      this.opts.meterIntervalMs ?? 500,
    );
    this.meterTimer.unref();
  }

  private async stopTransaction(reason: string): Promise<void> {
    const tx = this.tx;
    if (!tx) return;
    clearInterval(this.meterTimer);
    const data = [
      { timestamp: new Date().toISOString(), sampledValue: this.sampled('Transaction.End', 'E') },
    ];
    this.tx = undefined;
    this.schedule = undefined;
    this.finished = this.pluggedIn;
    await this.call('StopTransaction', {
      transactionId: tx.id,
      idTag: tx.idTag,
      meterStop: this.energyWh(),
      timestamp: new Date().toISOString(),
      reason,
      transactionData: data,
    }).catch(() => {});
    await this.sendStatus();
  }

  /** The owner presses stop on the wallbox: the transaction ends locally, the car stays plugged in. */
  async stopLocally(): Promise<void> {
    await this.stopTransaction('Local');
  }

  /** Reports a fault (Faulted), or clears it. */
  async setFaulted(faulted: boolean): Promise<void> {
    this.faulted = faulted;
    await this.sendStatus();
  }

  /** Drops the connection (a network outage); the transaction goes on offline. */
  async disconnect(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    await c?.close({ force: true }).catch(() => {});
  }

  /** Comes back after disconnect(). */
  reconnect(): Promise<void> {
    return this.start();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.meterTimer);
    await this.disconnect();
  }
}
