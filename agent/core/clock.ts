/**
 * Surviving clock jumps. A Raspberry Pi has no battery-backed clock: it boots with the time it
 * saved at shutdown (fake-hwclock) and the clock steps, often by hours, when NTP syncs. Session
 * deadlines and progress times are wall-clock ms because they are journaled and must mean the
 * same instant after a restart, so they cannot be monotonic. A step forward would fire every
 * timeout at once (a charge ended as "no progress"); a step back would hold them for hours.
 *
 * The watch compares how far the wall clock and the monotonic clock moved between two ticks; when
 * they disagree by more than a second, the wall clock was stepped, and the open sessions' times
 * are shifted by the step so they name the same instants in the new (NTP-correct) frame. NTP's
 * slewing (at most 0.5 ms/s) never reaches the threshold.
 */
import type { SessionRecord } from './session.js';

export const JUMP_THRESHOLD_MS = 1000;

export class ClockWatch {
  private lastWall: number;
  private lastMono: number;
  /** Steps seen since start (for the status page): count and the sum, ms. */
  readonly seen = { jumps: 0, totalMs: 0, lastAt: 0 };

  constructor(
    private readonly wall: () => number = () => Date.now(),
    private readonly mono: () => number = () => performance.now(),
    private readonly thresholdMs = JUMP_THRESHOLD_MS,
  ) {
    this.lastWall = wall();
    this.lastMono = mono();
  }

  /** The wall-clock step since the last check, ms (positive = forward); 0 when there was none. */
  check(): number {
    const wall = this.wall();
    const mono = this.mono();
    const step = wall - this.lastWall - (mono - this.lastMono);
    this.lastWall = wall;
    this.lastMono = mono;
    if (Math.abs(step) < this.thresholdMs) return 0;
    const ms = Math.round(step);
    this.seen.jumps++;
    this.seen.totalMs += ms;
    this.seen.lastAt = wall;
    return ms;
  }
}

/**
 * Moves a session's wall-clock times by `ms`, so that they keep pointing at the same instants.
 * The start time t0 moves only while charging: once the report is signed it carries t0 as signed.
 */
export function shiftSessionTimes(s: SessionRecord, ms: number): void {
  if (s.deadline) s.deadline += ms;
  if (s.lastProgressAt) s.lastProgressAt += ms;
  // The receipt timers of issue 12: a step must not look like a silent EV (or a due receipt).
  if (s.lastAckAt) s.lastAckAt += ms;
  if (s.switchedOnAt) s.switchedOnAt += ms;
  if (s.receiptAt) s.receiptAt += ms;
  s.updatedAt += ms;
  s.createdAt += ms;
  if (s.state === 'charging' && s.t0) s.t0 += Math.round(ms / 1000);
}
