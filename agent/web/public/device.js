// The device's live tile, its charge curve, and (on an EV's own control port) the charge form:
// the station (the edge's suggestion or the driver's pick), a target in kWh or ETH, the quote
// before the start, start and stop through the control port.
import { $, api, control, controlToken, row, state } from './api.js';
import { drawChargeCurve } from './charts.js';
import { addr, el, ether, kwh, parseEther, power, short, utc } from './format.js';
import { openLive } from './live.js';

const STATE_WORDS = {
  searching: 'searching for a station',
  requesting: 'asking a station',
  offered: 'offered to an EV',
  awaitingMutual: 'terms agreed',
  charging: 'charging',
  awaitingSettlement: 'charged; waiting for the bill on chain',
  done: 'done: the bill is on chain',
  failed: 'ended without a charge',
};

function deviceTile(d) {
  const s = d.session;
  if (!d.reachable)
    return el(
      'article',
      { class: 'device' },
      el('h3', {}, d.name),
      el('p', { class: 'error' }, `unreachable: ${d.error}`),
    );
  const terms = s?.terms;
  return el(
    'article',
    { class: 'device', 'aria-label': `${d.name} (${d.role})`, dataset: { state: s?.state ?? 'idle' } },
    el('h3', {}, `${d.name} `, el('small', {}, d.role)),
    el(
      'dl',
      {},
      row('Address', addr(d.address)),
      row('Meter energy', kwh(d.meter?.energyWh), 'num meter-energy'),
      row('Meter power', power(d.meter?.powerW), 'num meter-power'),
      row(
        'Session',
        [
          s
            ? `${STATE_WORDS[s.state] ?? s.state}${s.peer ? ` with ${short(s.peer)}` : ''}`
            : 'none in progress',
          s?.error ? ` (${s.error})` : '',
        ],
        'session-state',
      ),
      s?.energyWh !== undefined
        ? row(
            'Charged',
            [
              `${kwh(s.energyWh)}${s.targetWh ? ` of ${kwh(s.targetWh)}` : ''}`,
              s.targetWh
                ? el('progress', {
                    max: s.targetWh,
                    value: Math.min(s.energyWh, s.targetWh),
                    'aria-label': 'Charge progress',
                  })
                : '',
            ],
            'session-energy',
          )
        : undefined,
      terms
        ? row(
            'Agreed terms',
            `${ether(terms.priceWeiPerKWh)} ETH/kWh, at most ${kwh(terms.maxEnergyWh)}, settle by ${utc(terms.settleBy)} UTC`,
            'session-terms',
          )
        : undefined,
      s?.predictedWei !== undefined
        ? row('Bill so far', `${ether(s.predictedWei)} ETH`, 'num session-bill')
        : undefined,
      s?.reserved !== undefined
        ? row(
            'Reservation',
            s.reserved ? 'the cap is reserved on chain' : 'waiting for the reservation on chain',
            'session-reservation',
          )
        : undefined,
      s?.receipt
        ? row(
            'Signed receipt',
            `${s.receipt.index ? `#${s.receipt.index}: ` : ''}${kwh(s.receipt.wh)}${s.receipt.at ? ` at ${utc(s.receipt.at / 1000).slice(11)}` : ''}`,
            'session-receipt',
          )
        : undefined,
    ),
  );
}

async function showCurve(d) {
  const s = d?.session;
  const fig = $('#curve-figure');
  if (!s || s.energyWh === undefined || !['charging', 'awaitingSettlement', 'done'].includes(s.state)) {
    if (!s) fig.hidden = true;
    return;
  }
  try {
    const { points } = await api('trace', { id: s.id });
    if (!points.length) return;
    fig.hidden = false;
    drawChargeCurve($('#curve-chart'), points);
    const readings = points.filter((p) => p.wh !== undefined);
    $('#curve-caption').textContent =
      `This charge: energy (kWh) and the meter's power (kW) over time; ${readings.length} readings, the last ${kwh(readings.at(-1)?.wh)}` +
      (points.some((p) => p.receiptWh !== undefined)
        ? `, ${points.filter((p) => p.receiptWh !== undefined).length} signed receipts (dots)`
        : '') +
      '.';
  } catch {
    // The next push draws it.
  }
}

function renderDevices(devices) {
  $('#devices').replaceChildren(...devices.map(deviceTile));
  const mine = devices[0];
  state.device = mine;
  if (canCharge()) {
    const s = mine?.session;
    const busy = s && !['done', 'failed', 'awaitingSettlement'].includes(s.state);
    // Stop ends a charge, or declines one before the charger is on.
    $('#charge-stop').disabled = !busy;
    $('#charge-stop').textContent = s?.state === 'charging' || !busy ? 'Stop charging' : 'Cancel';
    $('#charge-start').disabled = Boolean(busy);
    const accept = $('#charge-accept');
    const wasHidden = accept.hidden;
    accept.hidden = !s?.awaitingAcceptance;
    if (s?.awaitingAcceptance && wasHidden) {
      $('#charge-status').textContent =
        `The station offers ${ether(s.terms.priceWeiPerKWh)} ETH/kWh, at most ${kwh(s.terms.maxEnergyWh)}: accept to start charging, or cancel.`;
      accept.focus();
    }
  }
  void showCurve(mine);
}

/** This page may start a charge: served by an EV's own control port (it holds the token). */
export function canCharge() {
  return Boolean(controlToken) && state.info?.ev !== undefined;
}

export function pickStation(hcs) {
  // The charge form is rebuilt when the device section opens: it takes the pick from here.
  state.pick = hcs;
  location.hash = '#device';
}

/** The charge's quote before it starts: which station, what the target buys, what it may cost. */
function chargeTarget() {
  const form = $('#charge-form');
  const hcs = form.hcs.value;
  const candidates = hcs ? state.stations.filter((s) => s.hcs === hcs) : state.suggestion;
  if (!candidates.length) return { error: 'No station is open to book within the search radius.' };
  // For a target in money, the dearest candidate's price: the charge never costs more than asked.
  const price = candidates.map((s) => BigInt(s.priceWeiPerKWh)).reduce((a, b) => (a > b ? a : b));
  let targetWh;
  try {
    targetWh =
      form.unit.value === 'eth'
        ? Number((parseEther(form.amount.value) * 1000n) / price)
        : Math.round(Number(form.amount.value) * 1000);
  } catch (err) {
    return { error: err.message };
  }
  if (!Number.isFinite(targetWh) || targetWh < 1) return { error: 'Give a target of at least 1 Wh.' };
  const station = candidates[0];
  const costWei = (BigInt(targetWh) * price) / 1000n;
  return { hcs, station, targetWh, price, costWei, candidates };
}

export function quote() {
  if (!canCharge()) return;
  const t = chargeTarget();
  const out = $('#charge-quote');
  if (t.error) {
    out.textContent = t.error;
    return;
  }
  const where = t.hcs
    ? `station ${short(t.hcs)}`
    : `the edge's best suggestion (${t.candidates.length} nearby, first ${short(t.station.hcs)})`;
  const minutes = Math.round((t.targetWh / t.station.powerW) * 60);
  out.textContent =
    `Before you start: ${where}, ${ether(t.price)} ETH/kWh at most, ${kwh(t.targetWh)} for at most ${ether(t.costWei)} ETH` +
    `, about ${minutes} min at ${(t.station.powerW / 1000).toFixed(1)} kW. The station's signed terms show below before the charge starts.`;
}

export async function startCharge(event) {
  event.preventDefault();
  const status = $('#charge-status');
  const t = chargeTarget();
  if (t.error) {
    status.textContent = t.error;
    return;
  }
  const ev = state.info.ev;
  try {
    status.textContent = 'Asking for a station…';
    const r = await control('charge', {
      targetWh: t.targetWh,
      latitude: ev.latitude,
      longitude: ev.longitude,
      radiusM: ev.radiusM,
      ...(t.hcs ? { hcs: t.hcs } : {}),
      ...($('#charge-form').confirm.checked ? { confirm: true } : {}),
    });
    status.textContent = `Session ${r.id}: ${STATE_WORDS[r.state] ?? r.state}. Its terms show below as soon as a station offers them.`;
  } catch (err) {
    status.textContent = `Not started: ${err.message}`;
  }
}

export async function acceptTerms() {
  const status = $('#charge-status');
  try {
    const r = await control('accept');
    $('#charge-accept').hidden = true;
    status.textContent = `Accepted: ${STATE_WORDS[r.state] ?? r.state}.`;
  } catch (err) {
    status.textContent = `Not accepted: ${err.message}`;
  }
}

export async function stopCharge() {
  const status = $('#charge-status');
  try {
    const r = await control('stop');
    status.textContent = `Stopped: ${STATE_WORDS[r.state] ?? r.state}.`;
  } catch (err) {
    status.textContent = `Not stopped: ${err.message}`;
  }
}

export async function showDevice() {
  if (canCharge()) {
    $('#charge-form').hidden = false;
    if (!state.suggestion.length || !state.stations.length) {
      const ev = state.info.ev;
      const r = await api('stations', { lat: ev.latitude, lon: ev.longitude, radiusM: ev.radiusM });
      state.stations = r.stations;
      state.suggestion = r.suggestion ?? [];
    }
    const select = $('#charge-station');
    const keep = select.value;
    select.replaceChildren(
      el('option', { value: '' }, "The edge's suggestion (best first)"),
      ...state.suggestion.map((s, i) =>
        el(
          'option',
          { value: s.hcs },
          `#${i + 1} ${short(s.hcs)} — ${(s.distanceM / 1000).toFixed(2)} km, ${ether(s.priceWeiPerKWh)} ETH/kWh`,
        ),
      ),
      ...state.stations
        .filter((s) => s.status === 'verified' && !state.suggestion.some((x) => x.hcs === s.hcs))
        .map((s) =>
          el(
            'option',
            { value: s.hcs },
            `${short(s.hcs)} — ${ether(s.priceWeiPerKWh)} ETH/kWh (outside the radius)`,
          ),
        ),
    );
    select.value = state.pick ?? keep;
    if (state.pick) select.focus();
    state.pick = undefined;
    quote();
  }
  openLive(renderDevices, (text) => {
    $('#live-status').textContent = text;
  });
}
