/**
 * The process's memory as the status shows it: resident set, V8 heap (used and reserved), memory
 * outside the heap (Buffers), and the heap still in use right after the last full collection.
 *
 * Why the last: the used heap alone is a sawtooth (garbage piles up between collections, more so
 * with the unit's small young generation), so a trend drawn through it mixes garbage with what is
 * kept. What survives a full (mark-compact) collection is what the process holds: a figure that
 * grows only when something is kept. Read in the collection's performance entry, which Node
 * delivers just after the collection; nothing is forced, so watching costs nothing between
 * collections.
 */
import { constants, PerformanceObserver } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

const MB = 1024 * 1024;
const mb = (bytes: number) => Math.round((bytes / MB) * 100) / 100;

export interface MemoryFigures {
  rssMb: number;
  heapUsedMb: number;
  heapTotalMb: number;
  externalMb: number;
  arrayBuffersMb: number;
  /** The used heap just after the last full collection (undefined before the first). */
  heapAfterGcMb?: number;
  /** Full collections seen since start. */
  fullGcs: number;
}

let afterGc: number | undefined;
let fullGcs = 0;
let observer: PerformanceObserver | undefined;

/** Starts watching the full collections (once per process: agents in one process share it). */
function watch(): void {
  if (observer) return;
  observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      if ((e as { detail?: { kind?: number } }).detail?.kind !== constants.NODE_PERFORMANCE_GC_MAJOR)
        continue;
      fullGcs++;
      afterGc = process.memoryUsage().heapUsed;
    }
  });
  observer.observe({ entryTypes: ['gc'] });
}

/** The figures now; the first call starts the watch of full collections. */
export function memoryFigures(): MemoryFigures {
  watch();
  const m = process.memoryUsage();
  return {
    rssMb: mb(m.rss),
    heapUsedMb: mb(m.heapUsed),
    heapTotalMb: mb(m.heapTotal),
    externalMb: mb(m.external),
    arrayBuffersMb: mb(m.arrayBuffers),
    ...(afterGc !== undefined ? { heapAfterGcMb: mb(afterGc) } : {}),
    fullGcs,
  };
}

let gc: (() => void) | undefined;

/**
 * A full collection now, then the figures: what the process holds, garbage gone (the control
 * action `gc`, for a soak run's samples and an operator's look; the unit does not expose gc, so it
 * is exposed here, once, on the first call). Blocks the process for the collection (tens of ms).
 */
export function collectNow(): MemoryFigures {
  if (!gc) {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as () => void;
  }
  watch();
  gc();
  // The watch counts this collection when its entry comes; the figure is taken now.
  afterGc = process.memoryUsage().heapUsed;
  return memoryFigures();
}
