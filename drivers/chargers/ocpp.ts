/**
 * OCPP 1.6J: the agent is the central system its wallbox connects to, at
 * ws://<host>:<port>/<chargePointId> (subprotocol ocpp1.6). Framing, call matching and the
 * schema validation of every call and answer (strict mode, with validators precompiled from its
 * OCPP 1.6 schemas: ocpp-validator.ts) are ocpp-rpc's; this module is the
 * central system's side of the conversation and the Charger a wallbox becomes through it.
 *
 * Sessions and transactions: the session's id is the idTag of RemoteStartTransaction, and the
 * transaction id this central system hands out for a numeric idTag is that number, so after a
 * restart a transaction the wallbox still runs names its session (MeterValues and
 * StopTransaction carry only the transaction id). A transaction for any other session than the
 * one the agent permits is stopped as soon as it is seen.
 *
 * Failsafe: the TxProfile's schedule drops the limit to 0 A `leaseS` after it was set; while the
 * agent lives it renews the profile (keepAlive), so a dead agent leaves at most `leaseS` of charge.
 */
import { EventEmitter } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { RPCServer } from 'ocpp-rpc';
import { ocpp16Validator } from './ocpp-validator.js';
import {
  type Charger,
  ChargerError,
  type ChargerIdentity,
  type ChargerState,
  type ChargerStatus,
  type FailsafeInfo,
  type SignedMeterValue,
} from './types.js';

// ocpp-rpc ships loose typings; this is the part of its server-side client used here.
interface RpcClient extends EventEmitter {
  identity: string;
  handle(method: string, handler: (call: { params: Record<string, unknown> }) => unknown): void;
  call(
    method: string,
    params: Record<string, unknown>,
    options?: { callTimeoutMs?: number },
  ): Promise<unknown>;
  close(options?: { code?: number; force?: boolean }): Promise<unknown>;
}

/** OCPP 1.6 ChargePointStatus → the normalised status. */
export const OCPP_STATUS: Record<string, ChargerStatus> = {
  Available: 'unplugged',
  Preparing: 'plugged',
  Charging: 'charging',
  SuspendedEV: 'suspendedByEv',
  SuspendedEVSE: 'plugged',
  Finishing: 'plugged',
  Reserved: 'unplugged',
  Unavailable: 'fault',
  Faulted: 'fault',
};

export interface Transaction {
  id: number;
  idTag: string;
  connectorId: number;
  meterStartWh: number;
  startedAt: number;
  stoppedAt?: number;
  meterStopWh?: number;
  stopReason?: string;
}

export interface OcppOptions {
  host?: string;
  /** 0 = a free port (tests). */
  port?: number;
  /** The only identity accepted; "*" accepts any (field diagnostics only). */
  chargePointId: string;
  connectorId?: number;
  /** Security profile 1: the charge point must send this as its HTTP basic-auth password. */
  password?: string;
  heartbeatS?: number;
  leaseS?: number;
  maxCurrentA?: number;
  /** Answer timeout for calls to the wallbox. */
  callTimeoutMs?: number;
  log?: { info(o: object, m: string): void; warn(o: object, m: string): void };
}

const NUMERIC_TAG = /^[1-9]\d{0,8}$/;
const PROFILE_ID = 1;

/** Energy in Wh from an OCPP SampledValue (unit Wh or kWh; Wh when absent). */
function sampledWh(v: { value: string; unit?: string }): number | undefined {
  const n = Number(v.value);
  if (!Number.isFinite(n)) return undefined;
  return v.unit === 'kWh' ? n * 1000 : n;
}

export class OcppCharger extends EventEmitter implements Charger {
  readonly kind = 'ocpp' as const;
  private readonly server: RPCServer;
  private http?: Server;
  private client?: RpcClient;
  private boot?: Record<string, unknown>;
  private status?: { status: string; errorCode: string; at: number; info?: string };
  private energyWh?: number;
  private powerW?: number;
  private limitA?: number;
  /** The session the agent permits; undefined = none (any transaction is stopped). */
  private permitted?: string;
  /** Whether the agent has said what it permits (before that, nothing is stopped: it may be resuming). */
  private enforcing = false;
  readonly transactions = new Map<number, Transaction>();
  private readonly signed = new Map<string, SignedMeterValue[]>();
  private nextForeignTx = 1_000_000_000;
  readonly connectorId: number;
  readonly leaseS: number;

  constructor(readonly opts: OcppOptions) {
    super();
    this.connectorId = opts.connectorId ?? 1;
    this.leaseS = opts.leaseS ?? 60;
    this.server = new RPCServer({
      protocols: ['ocpp1.6'],
      strictMode: true,
      // Precompiled from ocpp-rpc's own schemas: the same checks and CallErrors without ajv.
      strictModeValidators: [ocpp16Validator],
      callTimeoutMs: opts.callTimeoutMs ?? 15_000,
      pingIntervalMs: 20_000,
    });
    this.server.auth((accept, reject, handshake) => {
      if (opts.chargePointId !== '*' && handshake.identity !== opts.chargePointId) {
        opts.log?.warn(
          { id: handshake.identity, from: handshake.remoteAddress },
          'unknown charge point refused',
        );
        return reject(404, `unknown charge point ${handshake.identity}`);
      }
      if (opts.password !== undefined && handshake.password?.toString('utf8') !== opts.password) {
        opts.log?.warn(
          { id: handshake.identity },
          'charge point refused: wrong or missing basic-auth password',
        );
        return reject(401, 'bad credentials');
      }
      accept({ id: handshake.identity });
    });
    this.server.on('client', (c) => this.attach(c as unknown as RpcClient));
  }

  /** The port listened on (after open). */
  get port(): number | undefined {
    return (this.http?.address() as AddressInfo | null)?.port;
  }

  get url(): string {
    return `ws://${this.opts.host ?? '0.0.0.0'}:${this.port ?? this.opts.port}/${this.opts.chargePointId}`;
  }

  async open(): Promise<void> {
    this.http = await this.server.listen(this.opts.port ?? 8887, this.opts.host ?? '0.0.0.0');
  }

  connected(): boolean {
    return this.client !== undefined;
  }

  /** The identity of the connected wallbox. */
  get connectedId(): string | undefined {
    return this.client?.identity;
  }

  /** Asks the wallbox for its BootNotification (diagnostics: it may have booted long ago). */
  requestBoot(): Promise<void> {
    return this.trigger('BootNotification');
  }

  /** The boot information the wallbox sent (BootNotification), once it did. */
  get bootInfo(): Record<string, unknown> | undefined {
    return this.boot;
  }

  private attach(client: RpcClient): void {
    const previous = this.client;
    this.client = client;
    // A reconnecting wallbox replaces its old socket.
    if (previous && previous !== client) void previous.close({ force: true }).catch(() => {});
    this.opts.log?.info({ id: client.identity }, 'charge point connected');
    client.on('close', () => {
      if (this.client === client) {
        this.client = undefined;
        this.opts.log?.warn({ id: client.identity }, 'charge point disconnected');
        this.emit('disconnect');
      }
    });
    const now = () => new Date().toISOString();
    client.handle('BootNotification', ({ params }) => {
      this.boot = params;
      this.emit('boot', params);
      return { status: 'Accepted', currentTime: now(), interval: this.opts.heartbeatS ?? 60 };
    });
    client.handle('Heartbeat', () => ({ currentTime: now() }));
    client.handle('StatusNotification', ({ params }) => {
      const p = params as { connectorId: number; status: string; errorCode: string; info?: string };
      if (p.connectorId === this.connectorId || (p.connectorId === 0 && p.status === 'Faulted')) {
        this.status = {
          status: p.status,
          errorCode: p.errorCode,
          at: Date.now(),
          ...(p.info ? { info: p.info } : {}),
        };
        this.emit('status', this.status);
      }
      return {};
    });
    client.handle('Authorize', ({ params }) => ({
      idTagInfo: { status: params.idTag === this.permitted ? 'Accepted' : 'Invalid' },
    }));
    client.handle('StartTransaction', ({ params }) => {
      const p = params as { connectorId: number; idTag: string; meterStart: number; timestamp: string };
      const id = NUMERIC_TAG.test(p.idTag) ? Number(p.idTag) : this.nextForeignTx++;
      const ok = p.idTag === this.permitted;
      this.transactions.set(id, {
        id,
        idTag: p.idTag,
        connectorId: p.connectorId,
        meterStartWh: p.meterStart,
        startedAt: Date.parse(p.timestamp) || Date.now(),
      });
      this.energyWh = p.meterStart;
      this.emit('transaction', this.transactions.get(id));
      if (!ok) {
        this.opts.log?.warn({ idTag: p.idTag, id }, 'transaction for no permitted session: refused');
        // After the answer is on its way (the wallbox must know the id before it can be stopped).
        setTimeout(() => this.enforce(), 50).unref();
      }
      return { transactionId: id, idTagInfo: { status: ok ? 'Accepted' : 'Invalid' } };
    });
    client.handle('StopTransaction', ({ params }) => {
      const p = params as {
        transactionId: number;
        meterStop: number;
        timestamp: string;
        reason?: string;
        transactionData?: { timestamp: string; sampledValue: Record<string, string>[] }[];
      };
      const tx = this.transactions.get(p.transactionId);
      if (tx) {
        tx.stoppedAt = Date.parse(p.timestamp) || Date.now();
        tx.meterStopWh = p.meterStop;
        if (p.reason) tx.stopReason = p.reason;
      }
      this.energyWh = p.meterStop;
      // The car left (the cable was pulled on its side): that is the connector's state until the
      // wallbox's next StatusNotification, which may come after a poll has already seen the
      // transaction gone (a stop of the charger's own, without this).
      if (p.reason === 'EVDisconnected')
        this.status = { status: 'Available', errorCode: 'NoError', at: Date.now(), info: 'EVDisconnected' };
      for (const mv of p.transactionData ?? []) this.meterValue(tx?.idTag, mv);
      this.emit('stopped', tx ?? { id: p.transactionId });
      return { idTagInfo: { status: 'Accepted' } };
    });
    client.handle('MeterValues', ({ params }) => {
      const p = params as {
        connectorId: number;
        transactionId?: number;
        meterValue: { timestamp: string; sampledValue: Record<string, string>[] }[];
      };
      const tx =
        p.transactionId !== undefined ? this.learnTransaction(p.transactionId, p.connectorId) : undefined;
      for (const mv of p.meterValue) this.meterValue(tx?.idTag, mv);
      return {};
    });
    client.handle('DataTransfer', () => ({ status: 'UnknownVendorId' }));
    client.handle('DiagnosticsStatusNotification', () => ({}));
    client.handle('FirmwareStatusNotification', () => ({}));
    this.emit('connect', client.identity);
    // Read the wallbox's state as it is now (it may have been charging while we were away).
    void this.trigger('StatusNotification').then(() => this.trigger('MeterValues'));
  }

  private async trigger(requestedMessage: string): Promise<void> {
    await this.client
      ?.call('TriggerMessage', { requestedMessage, connectorId: this.connectorId })
      .catch(() => {}); // optional feature profile: older wallboxes answer NotImplemented
  }

  /** A transaction seen only through its id (after a restart): numeric ids are session ids. */
  private learnTransaction(id: number, connectorId: number): Transaction {
    let tx = this.transactions.get(id);
    if (!tx) {
      tx = { id, idTag: String(id), connectorId, meterStartWh: Number.NaN, startedAt: Date.now() };
      this.transactions.set(id, tx);
    }
    this.enforce();
    return tx;
  }

  private meterValue(
    idTag: string | undefined,
    mv: { timestamp: string; sampledValue: Record<string, string>[] },
  ): void {
    for (const v of mv.sampledValue) {
      const measurand = v.measurand ?? 'Energy.Active.Import.Register';
      if (v.format === 'SignedData' && typeof v.value === 'string') {
        const sessionId = idTag;
        const entry: SignedMeterValue = {
          format: v.value.startsWith('OCMF|') ? 'OCMF' : 'SignedData',
          data: v.value,
          ...(v.context ? { context: v.context } : {}),
          ...(sessionId ? { sessionId } : {}),
          at: Date.parse(mv.timestamp) || Date.now(),
        };
        const key = sessionId ?? '';
        const list = this.signed.get(key) ?? [];
        // Bounded: the Begin, the End and the latest few samples are what an audit needs.
        list.push(entry);
        if (list.length > 32) list.splice(1, list.length - 32);
        this.signed.set(key, list);
        continue;
      }
      if (measurand === 'Energy.Active.Import.Register' && (v.phase === undefined || v.phase === '')) {
        const wh = sampledWh(v as { value: string; unit?: string });
        if (wh !== undefined) this.energyWh = wh;
      } else if (measurand === 'Power.Active.Import' && !v.phase) {
        const n = Number(v.value);
        if (Number.isFinite(n)) this.powerW = v.unit === 'kW' ? n * 1000 : n;
      }
    }
  }

  /** The transaction running on our connector, if any. */
  activeTransaction(): Transaction | undefined {
    return [...this.transactions.values()].find(
      (t) => t.stoppedAt === undefined && t.connectorId === this.connectorId,
    );
  }

  /** Stops every running transaction that is not the permitted session's. */
  private enforce(): void {
    if (!this.enforcing) return;
    for (const tx of this.transactions.values()) {
      if (tx.stoppedAt !== undefined || tx.idTag === this.permitted) continue;
      this.opts.log?.warn(
        { transactionId: tx.id, idTag: tx.idTag },
        'stopping a transaction with no open session',
      );
      void this.remoteStop(tx).catch(() => {});
    }
  }

  private async remoteStop(tx: Transaction): Promise<void> {
    const res = (await this.call('RemoteStopTransaction', { transactionId: tx.id })) as { status: string };
    if (res.status !== 'Accepted')
      throw new ChargerError(
        'rejected',
        `the wallbox rejected RemoteStopTransaction ${tx.id}`,
        'check it is online and not in local mode',
      );
  }

  private call(method: string, params: Record<string, unknown>): Promise<unknown> {
    const c = this.client;
    if (!c)
      throw new ChargerError(
        'not-connected',
        `no wallbox connected as ${this.opts.chargePointId}`,
        `set its OCPP backend URL to ws://<this host>:${this.port ?? this.opts.port}/${this.opts.chargePointId}`,
      );
    return c.call(method, params).catch((err: Error) => {
      throw new ChargerError(
        'io',
        `${method} to ${this.opts.chargePointId} failed (${err.message})`,
        'check the wallbox is online',
        {
          cause: err,
        },
      );
    });
  }

  async identity(): Promise<ChargerIdentity> {
    const b = this.boot ?? {};
    return {
      vendor: String(b.chargePointVendor ?? 'unknown (no BootNotification yet)'),
      model: String(b.chargePointModel ?? 'unknown'),
      ...(b.chargePointSerialNumber || b.chargeBoxSerialNumber
        ? { serial: String(b.chargePointSerialNumber ?? b.chargeBoxSerialNumber) }
        : {}),
      ...(b.firmwareVersion ? { firmware: String(b.firmwareVersion) } : {}),
    };
  }

  async state(): Promise<ChargerState> {
    if (!this.client)
      throw new ChargerError(
        'not-connected',
        `no wallbox connected as ${this.opts.chargePointId}`,
        `set its OCPP backend URL to ws://<this host>:${this.port ?? this.opts.port}/${this.opts.chargePointId}`,
      );
    const s = this.status;
    const tx = this.activeTransaction();
    return {
      status: s ? (OCPP_STATUS[s.status] ?? 'fault') : 'unplugged',
      raw: s ? `${s.status}/${s.errorCode}${s.info ? ` (${s.info})` : ''}` : 'no StatusNotification yet',
      enabled: tx !== undefined && tx.idTag === this.permitted,
      ...(this.limitA !== undefined ? { currentLimitA: this.limitA } : {}),
      ...(this.energyWh !== undefined ? { energyWh: Math.round(this.energyWh) } : {}),
      ...(this.powerW !== undefined ? { powerW: this.powerW } : {}),
      at: s?.at ?? Date.now(),
    };
  }

  /**
   * A TxProfile whose limit falls to 0 A after the lease (renewed by keepAlive). No `duration`:
   * OCPP 1.6 keeps the last period (0 A) until the transaction ends.
   */
  private profile(currentA: number, transactionId?: number): Record<string, unknown> {
    return {
      chargingProfileId: PROFILE_ID,
      ...(transactionId !== undefined ? { transactionId } : {}),
      stackLevel: 0,
      chargingProfilePurpose: 'TxProfile',
      chargingProfileKind: 'Absolute',
      chargingSchedule: {
        startSchedule: new Date().toISOString(),
        chargingRateUnit: 'A',
        chargingSchedulePeriod: [
          { startPeriod: 0, limit: currentA },
          { startPeriod: this.leaseS, limit: 0 },
        ],
      },
    };
  }

  private clamp(currentA: number): number {
    if (!(currentA >= 6))
      throw new ChargerError(
        'rejected',
        `${currentA} A is below 6 A`,
        'IEC 61851-1 needs at least 6 A per phase: raise hcs.powerKw, or set charger.phases to 1 for a single-phase station',
      );
    return Math.min(currentA, this.opts.maxCurrentA ?? 32);
  }

  async enable(currentA: number, sessionId: string): Promise<void> {
    const limit = this.clamp(currentA);
    this.permitted = sessionId;
    this.enforcing = true;
    this.enforce();
    this.limitA = limit;
    const running = this.activeTransaction();
    if (running?.idTag === sessionId) {
      // Already charging for this session (after a restart or a reconnect): only the limit.
      await this.setCurrent(limit);
      return;
    }
    const res = (await this.call('RemoteStartTransaction', {
      connectorId: this.connectorId,
      idTag: sessionId,
      chargingProfile: this.profile(limit),
    })) as { status: string };
    if (res.status !== 'Accepted') {
      this.permitted = undefined;
      throw new ChargerError(
        'rejected',
        `the wallbox rejected RemoteStartTransaction for session ${sessionId}`,
        'check the connector is available (not Faulted or Unavailable) and that remote start is allowed in its settings',
      );
    }
  }

  async disable(): Promise<void> {
    this.permitted = undefined;
    this.enforcing = true;
    const tx = this.activeTransaction();
    if (!tx) return;
    await this.remoteStop(tx);
  }

  async setCurrent(currentA: number): Promise<void> {
    const limit = this.clamp(currentA);
    this.limitA = limit;
    const tx = this.activeTransaction();
    if (!tx) return; // the limit goes with the RemoteStart's profile
    const res = (await this.call('SetChargingProfile', {
      connectorId: this.connectorId,
      csChargingProfiles: this.profile(limit, tx.id),
    })) as { status: string };
    if (res.status !== 'Accepted')
      throw new ChargerError(
        'rejected',
        `the wallbox answered SetChargingProfile with ${res.status}`,
        'check it supports Smart Charging (OCPP 1.6 feature profile)',
      );
  }

  private leaseRenewedAt = 0;

  async keepAlive(): Promise<void> {
    // Renew the lease at a third of its length, so a lost renewal or two never lets it lapse.
    if (this.permitted === undefined || this.limitA === undefined) return;
    if (Date.now() - this.leaseRenewedAt < (this.leaseS * 1000) / 3) return;
    if (!this.activeTransaction()) return;
    // Throttled whether or not it succeeds: a wallbox refusing the renewal is not asked every tick.
    this.leaseRenewedAt = Date.now();
    await this.setCurrent(this.limitA);
  }

  /** ChangeAvailability of our connector. */
  async setAvailable(available: boolean): Promise<string> {
    const res = (await this.call('ChangeAvailability', {
      connectorId: this.connectorId,
      type: available ? 'Operative' : 'Inoperative',
    })) as { status: string };
    return res.status;
  }

  signedValues(sessionId: string): SignedMeterValue[] {
    return [...(this.signed.get(sessionId) ?? [])];
  }

  failsafe(): FailsafeInfo {
    return {
      configured: true,
      worstCaseS: this.leaseS,
      detail: `TxProfile lease: the limit falls to 0 A ${this.leaseS} s after the last renewal (renewed every ${Math.round(this.leaseS / 3)} s while the agent runs); on restart any transaction without an open session is stopped`,
    };
  }

  async close(): Promise<void> {
    await this.server.close({ force: true }).catch(() => {});
  }
}
