/**
 * Fault injection for the crash tests: with P2PEV_CRASH_AT=<point> the agent kills itself with
 * SIGKILL the first time it reaches that point (a marker file in the data directory makes it
 * once only), exactly as a power cut would stop it. Does nothing unless the variable is set.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export type CrashPoint =
  | 'after-mutual'
  | 'charging'
  | 'after-report'
  | 'after-reserve-submit'
  | 'after-submit'
  | 'before-broadcast';

export function crashPoint(point: CrashPoint, dataDir: string): void {
  if (process.env.P2PEV_CRASH_AT !== point) return;
  const marker = join(dataDir, `crashed-${point}`);
  if (existsSync(marker)) return;
  writeFileSync(marker, String(Date.now()));
  process.kill(process.pid, 'SIGKILL');
}
