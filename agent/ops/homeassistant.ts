/**
 * Home Assistant MQTT discovery, so a home owner sees the charge point (or the car's meter) in
 * the Energy dashboard without writing YAML. The agent publishes one retained config per sensor
 * under `<discoveryPrefix>/sensor/p2pev_<address>/<key>/config`, one retained JSON state with all
 * values, and an availability topic (the broker's last will says "offline" if the agent dies).
 *
 * It uses its own MQTT connection to Home Assistant's broker, the one in the house: `homeassistant.url`
 * is required, so house data never goes to the p2pev network's broker by default. Its password
 * comes from `passwordEnv`, set in the unit's EnvironmentFile= (/etc/p2pev/env). When Home
 * Assistant restarts it announces `<prefix>/status = online`, and the configs are sent again.
 */
import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { Logger } from '../core/log.js';

export interface HomeAssistantConfig {
  url: string;
  username?: string;
  passwordEnv?: string;
  caFile?: string;
  discoveryPrefix: string;
  intervalS: number;
}

export interface DeviceInfo {
  address: string;
  name: string;
  role: 'ev' | 'hcs' | 'edge';
  version: string;
  meter?: { vendor?: string; model?: string; serial?: string };
}

/** One state message: every value the sensors show (null when unknown). */
export interface HaState {
  energy_kwh: number | null;
  power_w: number | null;
  voltage_v: number | null;
  current_a: number | null;
  session: string;
  /** HCS: earnings on the contract, ether. EV: the deposit available for charging, ether. */
  money_eth: number | null;
}

interface SensorSpec {
  key: keyof HaState;
  name: string;
  unit?: string;
  device_class?: string;
  state_class?: string;
  icon?: string;
  precision?: number;
}

function sensorsFor(role: DeviceInfo['role']): SensorSpec[] {
  if (role === 'edge') return [{ key: 'session', name: 'Bills', icon: 'mdi:receipt-text' }];
  return [
    {
      key: 'energy_kwh',
      name: 'Energy',
      unit: 'kWh',
      device_class: 'energy',
      state_class: 'total_increasing',
      precision: 3,
    },
    { key: 'power_w', name: 'Power', unit: 'W', device_class: 'power', state_class: 'measurement' },
    { key: 'voltage_v', name: 'Voltage', unit: 'V', device_class: 'voltage', state_class: 'measurement' },
    { key: 'current_a', name: 'Current', unit: 'A', device_class: 'current', state_class: 'measurement' },
    { key: 'session', name: 'Charging session', icon: 'mdi:ev-station' },
    // In ether, without Home Assistant's monetary class: that class wants an ISO 4217 currency,
    // and ETH is none (Home Assistant would flag the sensor). Earnings only grow until withdrawn.
    role === 'hcs'
      ? { key: 'money_eth', name: 'Earnings', unit: 'ETH', state_class: 'total', precision: 6 }
      : {
          key: 'money_eth',
          name: 'Deposit available',
          unit: 'ETH',
          state_class: 'measurement',
          precision: 6,
        },
  ];
}

/** `p2pev_<40 hex>`: Home Assistant's node ids allow [a-zA-Z0-9_-] only. */
export function nodeId(address: string): string {
  return `p2pev_${address.toLowerCase().replace(/^0x/, '')}`;
}

export function topics(prefix: string, address: string) {
  const node = nodeId(address);
  return {
    state: `p2pev/ha/${node}/state`,
    availability: `p2pev/ha/${node}/availability`,
    haStatus: `${prefix}/status`,
    config: (key: string) => `${prefix}/sensor/${node}/${key}/config`,
  };
}

/** The retained discovery messages, topic → payload. */
export function discoveryMessages(prefix: string, device: DeviceInfo): { topic: string; payload: object }[] {
  const t = topics(prefix, device.address);
  const node = nodeId(device.address);
  const model = { ev: 'EV meter', hcs: 'Home charging station', edge: 'Edge server' }[device.role];
  return sensorsFor(device.role).map((s) => ({
    topic: t.config(s.key),
    payload: {
      name: s.name,
      unique_id: `${node}_${s.key}`,
      state_topic: t.state,
      value_template: `{{ value_json.${s.key} }}`,
      availability_topic: t.availability,
      payload_available: 'online',
      payload_not_available: 'offline',
      ...(s.unit ? { unit_of_measurement: s.unit } : {}),
      ...(s.device_class ? { device_class: s.device_class } : {}),
      ...(s.state_class ? { state_class: s.state_class } : {}),
      ...(s.icon ? { icon: s.icon } : {}),
      ...(s.precision !== undefined ? { suggested_display_precision: s.precision } : {}),
      device: {
        identifiers: [node],
        name: `p2pev ${device.name}`,
        manufacturer: 'p2pev',
        model: device.meter?.model ? `${model} (${device.meter.model})` : model,
        sw_version: device.version,
        ...(device.meter?.serial && device.meter.serial !== 'unknown'
          ? { serial_number: device.meter.serial }
          : {}),
      },
      origin: { name: 'p2pev', sw_version: device.version },
    },
  }));
}

export class HomeAssistant {
  private client?: MqttClient;
  private last?: HaState;
  private readonly t: ReturnType<typeof topics>;

  constructor(
    private readonly cfg: HomeAssistantConfig,
    private readonly device: DeviceInfo,
    private readonly log: Logger,
  ) {
    this.t = topics(cfg.discoveryPrefix, device.address);
  }

  /** Connects in the background: an absent Home Assistant broker never holds up the agent. */
  start(): void {
    const c = this.cfg;
    const options: IClientOptions = {
      clientId: `${nodeId(this.device.address).slice(0, 18)}-ha`,
      clean: true,
      reconnectPeriod: 5000,
      // No cache of 65,536 packet-id Buffers (~6 MB); see agent/core/bus.ts.
      writeCache: false,
      connectTimeout: 10_000,
      will: { topic: this.t.availability, payload: Buffer.from('offline'), qos: 1, retain: true },
      ...(c.username ? { username: c.username } : {}),
      ...(c.passwordEnv && process.env[c.passwordEnv] ? { password: process.env[c.passwordEnv] } : {}),
      ...(c.caFile ? { ca: readFileSync(c.caFile) } : {}),
    };
    const client = mqtt.connect(c.url, options);
    this.client = client;
    client.on('connect', () => {
      this.log.info({ broker: c.url }, 'home assistant broker connected');
      void this.announce();
      client.subscribe(this.t.haStatus, { qos: 1 });
    });
    client.on('message', (topic, payload) => {
      if (topic === this.t.haStatus && payload.toString() === 'online') void this.announce();
    });
    client.on('error', (err) => this.log.warn({ err: err.message }, 'home assistant mqtt error'));
  }

  /** Discovery configs, "online", and the last state: on every (re)connect and HA restart. */
  private async announce(): Promise<void> {
    const client = this.client;
    if (!client?.connected) return;
    try {
      for (const m of discoveryMessages(this.cfg.discoveryPrefix, this.device))
        await client.publishAsync(m.topic, JSON.stringify(m.payload), { qos: 1, retain: true });
      await client.publishAsync(this.t.availability, 'online', { qos: 1, retain: true });
      if (this.last) await this.publishState(this.last);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'home assistant discovery not published');
    }
  }

  async publishState(state: HaState): Promise<void> {
    this.last = state;
    if (!this.client?.connected) return;
    await this.client
      .publishAsync(this.t.state, JSON.stringify(state), { qos: 0, retain: true })
      .catch((err) => this.log.warn({ err: (err as Error).message }, 'home assistant state not published'));
  }

  async stop(): Promise<void> {
    if (!this.client) return;
    // A clean stop says "offline" itself: the will is only sent when the connection breaks.
    if (this.client.connected)
      await this.client
        .publishAsync(this.t.availability, 'offline', { qos: 1, retain: true })
        .catch(() => {});
    await this.client.endAsync().catch(() => {});
  }
}
