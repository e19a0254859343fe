/**
 * Prometheus metrics (prom-client), served on the configured port at /metrics. One registry per
 * agent so that several agents in one test process do not collide.
 */
import type { Server } from 'node:http';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { signatureBackendInfo, signatureChecks } from '../../protocol/index.js';
import { HttpError, serveHttp } from './http.js';

/** Figures read at scrape time from the running agent (set once it has its bus and chain). */
export interface Probes {
  brokerConnected?: () => boolean;
  chainReachable?: () => boolean;
}

export function createMetrics(processMetrics = true) {
  const registry = new Registry();
  const probes: Probes = {};
  // The process's own figures (memory, event loop lag) only where someone scrapes them: many sim
  // agents in one process would each start their own event-loop monitor.
  if (processMetrics) collectDefaultMetrics({ register: registry });
  const r = [registry];
  return {
    registry,
    probes,
    meterReadSeconds: new Histogram({
      name: 'p2pev_meter_read_seconds',
      help: 'Meter read latency (every read: the session poll and the telemetry sample)',
      registers: r,
      buckets: [0.01, 0.03, 0.1, 0.3, 1, 3],
    }),
    meterErrors: new Counter({
      name: 'p2pev_meter_errors_total',
      help: 'Meter read errors by class',
      labelNames: ['kind'],
      registers: r,
    }),
    sessions: new Gauge({
      name: 'p2pev_sessions',
      help: 'Sessions by state',
      labelNames: ['state'],
      registers: r,
    }),
    messagesIn: new Counter({
      name: 'p2pev_messages_received_total',
      help: 'Accepted messages by type',
      labelNames: ['type'],
      registers: r,
    }),
    messagesOut: new Counter({
      name: 'p2pev_messages_sent_total',
      help: 'Sent messages by type',
      labelNames: ['type'],
      registers: r,
    }),
    bytesOut: new Counter({ name: 'p2pev_bytes_sent_total', help: 'Envelope bytes published', registers: r }),
    dropped: new Counter({
      name: 'p2pev_messages_dropped_total',
      help: 'Dropped messages by reason',
      labelNames: ['reason'],
      registers: r,
    }),
    meterEnergyWh: new Gauge({
      name: 'p2pev_meter_energy_wh',
      help: "The meter's billing register (total imported energy), Wh, at the last read",
      registers: r,
    }),
    meterPowerW: new Gauge({
      name: 'p2pev_meter_power_w',
      help: 'Active power at the last full read, W',
      registers: r,
    }),
    meterUp: new Gauge({
      name: 'p2pev_meter_up',
      help: '1 when the last meter read succeeded, 0 when it failed',
      registers: r,
    }),
    chargerUp: new Gauge({
      name: 'p2pev_charger_up',
      help: '1 when the charger answered the last poll (OCPP: a wallbox is connected), 0 when not',
      registers: r,
    }),
    chargerOn: new Gauge({
      name: 'p2pev_charger_on',
      help: '1 while the station has its charger switched on for a session',
      registers: r,
    }),
    brokerConnected: new Gauge({
      name: 'p2pev_broker_connected',
      help: '1 while connected to the MQTT broker',
      registers: r,
      collect() {
        if (probes.brokerConnected) this.set(probes.brokerConnected() ? 1 : 0);
      },
    }),
    chainReachable: new Gauge({
      name: 'p2pev_chain_reachable',
      help: "1 while the chain node answers (the last call's outcome)",
      registers: r,
      collect() {
        if (probes.chainReachable) this.set(probes.chainReachable() ? 1 : 0);
      },
    }),
    buildInfo: new Gauge({
      name: 'p2pev_build_info',
      help: 'Always 1; the labels say which p2pev, Node.js and role run',
      labelNames: ['version', 'node', 'role'],
      registers: r,
    }),
    journalBytes: new Gauge({ name: 'p2pev_journal_bytes', help: 'Journal file size', registers: r }),
    billsQueued: new Gauge({ name: 'p2pev_bills_queued', help: 'Bills waiting for the chain', registers: r }),
    // Which backend checks signatures (1 for the one running), and how many checks this process
    // made: with the sessions' counts, the checks per session (docs/BENCHMARKS.md).
    signatureBackend: new Gauge({
      name: 'p2pev_signature_backend',
      help: 'The signature-check backend this process runs (libsecp256k1 native, or noble-curves JS)',
      labelNames: ['backend'],
      registers: r,
      collect() {
        this.set({ backend: signatureBackendInfo().name }, 1);
      },
    }),
    signatureChecks: new Gauge({
      name: 'p2pev_signature_checks_total',
      help: 'Signature checks (signer recoveries) made by this process since it started',
      registers: r,
      collect() {
        this.set(signatureChecks.total);
      },
    }),
    chainSubmitSeconds: new Histogram({
      name: 'p2pev_chain_submit_seconds',
      help: 'Time from submit to receipt',
      registers: r,
      buckets: [0.1, 0.3, 1, 3, 10, 30, 100],
    }),
  };
}
export type Metrics = ReturnType<typeof createMetrics>;

export function serveMetrics(metrics: Metrics, host: string, port: number): Promise<Server> {
  return serveHttp(host, port, async (req, res) => {
    if (req.url !== '/metrics') throw new HttpError(404, 'not found: the metrics are at /metrics');
    res.writeHead(200, { 'content-type': metrics.registry.contentType });
    res.end(await metrics.registry.metrics());
  });
}
