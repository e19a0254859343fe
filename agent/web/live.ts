/**
 * The live device for the page, pushed by server-sent events (`GET /api/live`) instead of the
 * page polling: every second, while someone watches or a charge runs, the devices are sampled;
 * a change is sent to every open stream at once. Each charging session's curve (energy and the
 * meter's power over time) is kept in memory for its chart (`GET /api/trace?id=`), bounded.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { SECURITY_HEADERS } from '../core/http.js';
import { toHttpJson } from '../core/json.js';
import type { DeviceState } from './device.js';

export interface TracePoint {
  /** ms since the epoch. */
  t: number;
  /** Energy of the session so far (absent on a receipt's own point). */
  wh?: number;
  powerW?: number;
  /** A signed receipt that arrived with this sample: the energy it signs for. */
  receiptWh?: number;
}

const SAMPLE_MS = 1000;
const HEARTBEAT_MS = 15_000;
/** An hour of one-second points per session, and the last few sessions. */
const MAX_POINTS = 3600;
const MAX_TRACES = 8;

export interface LiveFeedOptions {
  sample: () => Promise<DeviceState[]>;
  /** Sample even with nobody watching (a charge runs): its curve is kept for the chart. */
  busy?: () => boolean;
}

export class LiveFeed {
  private readonly clients = new Set<ServerResponse>();
  private readonly traces = new Map<string, TracePoint[]>();
  /** Per session, the energy of the last receipt put on its curve. */
  private readonly receiptSeen = new Map<string, number>();
  private timer?: NodeJS.Timeout;
  private last = '';
  private latest: DeviceState[] = [];
  private sampling = false;

  constructor(private readonly opts: LiveFeedOptions) {}

  /** Starts the one-second sampler (idempotent); it skips its work while idle and unwatched. */
  start(): void {
    this.timer ??= setInterval(() => void this.tick(), SAMPLE_MS);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    for (const c of this.clients) c.end();
    this.clients.clear();
  }

  trace(id: string): TracePoint[] | undefined {
    return this.traces.get(id);
  }

  /** Opens an event stream: the current state at once, then every change. */
  async stream(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.start();
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      ...SECURITY_HEADERS,
    });
    res.write('retry: 2000\n\n');
    this.clients.add(res);
    const heartbeat = setInterval(() => res.write(': alive\n\n'), HEARTBEAT_MS);
    heartbeat.unref();
    req.on('close', () => {
      clearInterval(heartbeat);
      this.clients.delete(res);
    });
    if (!this.latest.length) await this.tick(true);
    else res.write(this.event(this.latest));
  }

  private event(devices: DeviceState[]): string {
    return `event: device\ndata: ${toHttpJson({ devices, at: Date.now() })}\n\n`;
  }

  private async tick(force = false): Promise<void> {
    if (this.sampling) return;
    if (!force && this.clients.size === 0 && !this.opts.busy?.()) return;
    this.sampling = true;
    try {
      const devices = await this.opts.sample();
      this.latest = devices;
      this.record(devices);
      const text = toHttpJson(devices);
      if (text !== this.last || force) {
        this.last = text;
        const event = this.event(devices);
        for (const c of this.clients) c.write(event);
      }
    } catch {
      // A device that cannot be read shows as unreachable in the next sample; nothing to push.
    } finally {
      this.sampling = false;
    }
  }

  private record(devices: DeviceState[]): void {
    for (const d of devices) {
      const s = d.session;
      if (s?.state !== 'charging' || s.energyWh === undefined) continue;
      let points = this.traces.get(s.id);
      if (!points) {
        // The charge's first point: nothing metered at its start.
        points = s.startedAt ? [{ t: s.startedAt * 1000, wh: 0 }] : [];
        this.traces.set(s.id, points);
        while (this.traces.size > MAX_TRACES) {
          const oldest = this.traces.keys().next().value!;
          this.traces.delete(oldest);
          this.receiptSeen.delete(oldest);
        }
      }
      // A receipt not yet on the curve: its own point, at the moment it was signed.
      const receipt = s.receipt && s.receipt.wh !== this.receiptSeen.get(s.id) ? s.receipt : undefined;
      if (receipt) {
        this.receiptSeen.set(s.id, receipt.wh);
        insertByTime(points, { t: receipt.at ?? Date.now(), receiptWh: receipt.wh });
      }
      const point: TracePoint = {
        t: d.meter?.readAt ?? Date.now(),
        wh: s.energyWh,
        ...(d.meter?.powerW !== undefined ? { powerW: d.meter.powerW } : {}),
      };
      if (!points.some((p) => p.t === point.t && p.wh !== undefined)) insertByTime(points, point);
      if (points.length > MAX_POINTS) points.splice(1, points.length - MAX_POINTS);
    }
  }
}

/** Keeps a curve in time order (a receipt is signed between two samples). */
function insertByTime(points: TracePoint[], point: TracePoint): void {
  let i = points.length;
  while (i > 0 && (points[i - 1]?.t ?? 0) > point.t) i--;
  points.splice(i, 0, point);
}
