// Charts with uPlot (served from its npm package by the agent): a charge's curve and a member's
// months. Each chart's figure says in its caption and data attributes what it drew, for screen
// readers and tests alike; the same figures are in the tables beside it.

const charts = new Map();

// A phone turned, a window resized: every chart follows its box's width.
window.addEventListener('resize', () => {
  for (const chart of charts.values()) {
    if (chart.root.isConnected)
      chart.setSize({ width: width(chart.root.parentElement), height: chart.height });
  }
});

function width(container) {
  return Math.max(280, Math.min(container.parentElement?.clientWidth || 640, 900) - 8);
}

function draw(key, container, opts, data) {
  const old = charts.get(key);
  // Same series: update the data in place (a live curve redraws every second).
  if (old && old.series.length === opts.series.length && old.root.isConnected) {
    old.setData(data);
    const w = width(container);
    if (old.width !== w) old.setSize({ width: w, height: old.height });
    return old;
  }
  old?.destroy();
  container.replaceChildren();
  const chart = new window.uPlot({ ...opts, width: width(container) }, data, container);
  charts.set(key, chart);
  return chart;
}

/**
 * A charge's curve: energy (kWh) and the meter's power (kW) over time, from the session's
 * readings (`points`: { t ms, wh, powerW?, receiptWh? }), the EV's signed receipts as dots.
 */
export function drawChargeCurve(container, points) {
  if (!window.uPlot) return;
  const xs = points.map((p) => p.t / 1000);
  const energy = points.map((p) => (p.wh === undefined ? null : p.wh / 1000));
  const power = points.map((p) => (p.powerW === undefined ? null : p.powerW / 1000));
  const signed = points.map((p) => (p.receiptWh === undefined ? null : p.receiptWh / 1000));
  draw(
    'curve',
    container,
    {
      height: 240,
      scales: { x: { time: true }, kwh: { auto: true }, kw: { auto: true } },
      axes: [
        {},
        { scale: 'kwh', label: 'kWh', size: 56 },
        { scale: 'kw', label: 'kW', side: 1, size: 56, grid: { show: false } },
      ],
      series: [
        { label: 'Time' },
        {
          label: 'Energy',
          scale: 'kwh',
          stroke: '#0a5bb5',
          width: 2,
          // A receipt's own point has no reading: the line runs on through it.
          spanGaps: true,
          value: (_u, v) => (v == null ? '—' : `${v.toFixed(3)} kWh`),
        },
        {
          label: 'Power',
          scale: 'kw',
          stroke: '#a4141b',
          width: 1.5,
          spanGaps: true,
          value: (_u, v) => (v == null ? '—' : `${v.toFixed(2)} kW`),
        },
        {
          label: 'Signed receipts',
          scale: 'kwh',
          stroke: '#1a6b2f',
          // Dots only: a receipt is a signature at a moment, not a line.
          paths: () => null,
          points: { show: true, size: 8, fill: '#1a6b2f' },
          value: (_u, v) => (v == null ? '—' : `${v.toFixed(3)} kWh`),
        },
      ],
    },
    [xs, energy, power, signed],
  );
  container.dataset.points = String(points.filter((p) => p.wh !== undefined).length);
  container.dataset.receipts = String(signed.filter((v) => v !== null).length);
  container.dataset.lastWh = String(points.findLast((p) => p.wh !== undefined)?.wh ?? '');
}

/** Energy (kWh, bars) and money (ETH, line) per month; `months` from the statement API. */
export function drawMonthly(container, months, role) {
  if (!window.uPlot) return;
  // One slot per month (a category axis): a single month is a bar, not a point on a years-wide axis.
  const xs = months.map((_m, i) => i);
  const label = (i) => months[Math.round(i)]?.month ?? '';
  const kwh = months.map((m) => Number(m.energyWh) / 1000);
  const eth = months.map((m) => Number(BigInt(role === 'hcs' ? m.earnedWei : m.paidWei) / 10n ** 9n) / 1e9);
  const bars = window.uPlot.paths?.bars?.({ size: [0.5, 60] });
  const figures = (ticks) => ticks.map((t) => String(Number(t.toPrecision(3))));
  draw(
    'monthly',
    container,
    {
      height: 220,
      scales: {
        x: { time: false, range: () => [-0.5, Math.max(0, months.length - 1) + 0.5] },
        kwh: { range: (_u, _min, max) => [0, Math.max(max, 0.001) * 1.15] },
        eth: { range: (_u, _min, max) => [0, Math.max(max, 1e-9) * 1.15] },
      },
      axes: [
        { splits: () => xs, values: (_u, ticks) => ticks.map(label) },
        { scale: 'kwh', label: 'kWh', size: 56, values: (_u, ticks) => figures(ticks) },
        {
          scale: 'eth',
          label: 'ETH',
          side: 1,
          size: 70,
          grid: { show: false },
          values: (_u, ticks) => figures(ticks),
        },
      ],
      series: [
        { label: 'Month', value: (_u, i) => (i == null ? '—' : label(i)) },
        {
          label: 'Energy',
          scale: 'kwh',
          stroke: '#0a5bb5',
          fill: 'rgba(10,91,181,0.35)',
          paths: bars,
          value: (_u, v) => (v == null ? '—' : `${v.toFixed(3)} kWh`),
        },
        {
          label: role === 'hcs' ? 'Earned' : 'Paid',
          scale: 'eth',
          stroke: '#a4141b',
          width: 2,
          points: { show: true, size: 7 },
          value: (_u, v) => (v == null ? '—' : `${v.toFixed(6)} ETH`),
        },
      ],
    },
    [xs, kwh, eth],
  );
  container.dataset.months = String(months.length);
}
