/**
 * Per-meter bus statistics. Memory is bounded (a ring of the last 1024 latencies) because the agent
 * runs for years on 1 GB; the counters are plain numbers (exact up to 2^53).
 */
import type { BusStats, ErrorKind, LatencySummary } from './types.js';

const WINDOW = 1024;

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] ?? 0;
}

export function summarize(samples: readonly number[]): LatencySummary {
  const sorted = [...samples].sort((a, b) => a - b);
  const round = (x: number) => Math.round(x * 1000) / 1000;
  return {
    samples: sorted.length,
    p50: round(percentile(sorted, 50)),
    p90: round(percentile(sorted, 90)),
    p99: round(percentile(sorted, 99)),
    max: round(sorted.at(-1) ?? 0),
  };
}

export class StatsRecorder {
  private requests = 0;
  private responses = 0;
  private retries = 0;
  private reconnects = 0;
  private readonly errors: Record<ErrorKind, number> = {
    timeout: 0,
    crc: 0,
    exception: 0,
    'port-gone': 0,
    implausible: 0,
    config: 0,
  };
  private readonly latencies = new Float64Array(WINDOW);
  private latencyCount = 0;
  private lastError?: BusStats['lastError'];

  request(): void {
    this.requests++;
  }
  response(latencyMs: number): void {
    this.responses++;
    this.latencies[this.latencyCount % WINDOW] = latencyMs;
    this.latencyCount++;
  }
  retry(): void {
    this.retries++;
  }
  reconnect(): void {
    this.reconnects++;
  }
  error(kind: ErrorKind, message: string): void {
    this.errors[kind]++;
    this.lastError = { kind, message, at: Date.now() };
  }

  snapshot(): BusStats {
    const n = Math.min(this.latencyCount, WINDOW);
    return {
      requests: this.requests,
      responses: this.responses,
      retries: this.retries,
      errors: { ...this.errors },
      reconnects: this.reconnects,
      latencyMs: summarize(Array.from(this.latencies.subarray(0, n))),
      ...(this.lastError ? { lastError: { ...this.lastError } } : {}),
    };
  }
}
