import { expect } from 'vitest';
import type { Agent } from '../../agent/core/runtime.js';
import { OPEN_STATES } from '../../agent/core/session.js';

/**
 * The open sessions and the `sessions` gauge, which the runtime keeps as sessions are saved
 * (agent/core/runtime.ts), say what a full scan of the sessions says.
 */
export async function expectSessionIndexMatchesScan(
  a: Pick<Agent, 'sessions' | 'openSessions' | 'metrics'>,
): Promise<void> {
  const scan = [...a.sessions.values()];
  expect(a.openSessions()).toEqual(scan.filter((x) => OPEN_STATES.includes(x.state)));
  const counts: Record<string, number> = {};
  for (const x of scan) counts[x.state] = (counts[x.state] ?? 0) + 1;
  const gauge = (await a.metrics.sessions.get()).values;
  expect(Object.fromEntries(gauge.map((v) => [v.labels.state, v.value]))).toEqual(counts);
}
