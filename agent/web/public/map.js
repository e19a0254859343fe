// The stations on a Leaflet map (served from the npm package by the agent: no CDN), clustered
// when there are many, over tiles from a configurable URL (OpenStreetMap's by default). Without a
// reachable tile server the map stays blank and the stations still show.
import { addr, el, ether, stars } from './format.js';

const L = () => window.L;
let map;
let layers;
let tilesBroken = false;

/** Red → amber → green by mean rating; grey when unrated. Dark enough for white labels. */
export function colour(s) {
  if (Number(s.ratingCount) === 0) return '#5f6368';
  const t = Math.max(0, Math.min(1, (Number(s.meanRating) / 100 - 1) / 4));
  return `hsl(${Math.round(t * 120)}, 70%, 30%)`;
}

/** Great-circle distance in metres (the same haversine the ranking uses). */
export function distanceM(a, b) {
  const rad = Math.PI / 180;
  const dLat = (b.latitude - a.latitude) * rad;
  const dLon = (b.longitude - a.longitude) * rad;
  const h =
    Math.sin(dLat / 2) ** 2 +
    Math.cos(a.latitude * rad) * Math.cos(b.latitude * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * 6_371_000 * Math.asin(Math.sqrt(h));
}

function ensureMap(container, info, note) {
  if (map) return map;
  // No zoom and fade animations for whom motion is a burden (and a Pi's browser saves the work).
  const still = window.matchMedia?.('(prefers-reduced-motion: reduce)').matches ?? false;
  map = L().map(container, {
    zoomControl: true,
    attributionControl: true,
    keyboard: true,
    // Quarter zoom steps: the search radius fills the map instead of half of it.
    zoomSnap: 0.25,
    zoomAnimation: !still,
    fadeAnimation: !still,
    markerZoomAnimation: !still,
  });
  map.attributionControl.setPrefix(false);
  if (info.tiles && info.tiles !== 'none') {
    const tiles = L().tileLayer(info.tiles, { maxZoom: 19, attribution: info.tileAttribution ?? '' });
    tiles.on('tileerror', () => {
      if (tilesBroken) return;
      tilesBroken = true;
      note.textContent = 'The map tiles cannot be reached: the stations are shown on a blank map.';
    });
    tiles.addTo(map);
  } else {
    note.textContent = 'No map tiles are configured: the stations are shown on a blank map.';
  }
  layers = {
    stations: L().markerClusterGroup({
      maxClusterRadius: 30,
      animate: !still,
      showCoverageOnHover: false,
      iconCreateFunction: (cluster) =>
        L().divIcon({
          className: 'station-cluster',
          html: `<span>${cluster.getChildCount()}<span class="sr-only"> stations</span></span>`,
          iconSize: [36, 36],
        }),
    }),
    ev: L().layerGroup(),
  };
  layers.stations.addTo(map);
  layers.ev.addTo(map);
  return map;
}

function popup(s, rank, at, onPick) {
  const distance = at ? distanceM(at, s) : undefined;
  const body = el(
    'div',
    { class: 'station-popup', dataset: { hcs: s.hcs } },
    el('strong', {}, 'Station ', addr(s.hcs)),
    rank ? el('p', { class: 'rank' }, `Suggestion #${rank}`) : undefined,
    el(
      'dl',
      {},
      el('dt', {}, 'Price'),
      el('dd', { class: 'popup-price' }, `${ether(s.priceWeiPerKWh)} ETH/kWh`),
      el('dt', {}, 'Power'),
      el('dd', { class: 'popup-power' }, `${(s.powerW / 1000).toFixed(1)} kW`),
      el('dt', {}, 'Mean rating'),
      el('dd', { class: 'popup-rating' }, `${stars(s.meanRating, s.ratingCount)} (${s.ratingCount})`),
      el('dt', {}, 'Availability'),
      el(
        'dd',
        { class: 'popup-status' },
        s.status === 'verified' ? 'open to book' : `not bookable (${s.status})`,
      ),
      el('dt', {}, 'Distance'),
      el(
        'dd',
        { class: 'popup-distance' },
        distance === undefined ? '—' : `${(distance / 1000).toFixed(2)} km`,
      ),
    ),
  );
  if (onPick && s.status === 'verified') {
    const button = el('button', { type: 'button', class: 'pick', dataset: { hcs: s.hcs } }, 'Charge here');
    // Leaflet keeps a popup's clicks from the map: the button's own listener.
    button.addEventListener('click', () => onPick(s.hcs));
    body.append(button);
  }
  return body;
}

/**
 * Shows the stations (a pin each; its number the place in `suggestion`), the EV and its search
 * radius as a circle. `onPick(hcs)`, where given, puts a "Charge here" button in each popup.
 */
export function drawMap(container, note, info, stations, view = {}) {
  if (!L()) {
    container.textContent = 'The map library did not load.';
    return;
  }
  const { at, radiusM, suggestion = [], onPick } = view;
  const m = ensureMap(container, info, note);
  layers.stations.clearLayers();
  layers.ev.clearLayers();
  const rankOf = new Map(suggestion.map((s, i) => [s.hcs, i + 1]));
  const bounds = [];
  for (const s of stations) {
    const rank = rankOf.get(s.hcs);
    const label = `Station ${s.hcs}${rank ? `, suggestion ${rank}` : ''}: ${stars(s.meanRating, s.ratingCount)}, ${s.status === 'verified' ? 'open to book' : s.status}`;
    const marker = L().marker([s.latitude, s.longitude], {
      title: label,
      keyboard: true,
      icon: L().divIcon({
        className: `station-pin${rank ? ' suggested' : ''}`,
        html: `<span class="pin" data-colour="${colour(s)}">${rank ?? ''}</span>`,
        iconSize: [28, 28],
        iconAnchor: [14, 14],
        popupAnchor: [0, -12],
      }),
    });
    marker.on('add', () => {
      const icon = marker.getElement();
      if (!icon) return;
      icon.setAttribute('aria-label', label);
      icon.dataset.hcs = s.hcs;
      // Colour through the CSSOM (the CSP keeps style attributes out).
      const pin = icon.querySelector('.pin');
      if (pin) pin.style.background = colour(s);
    });
    marker.bindPopup(() => popup(s, rank, at, onPick));
    layers.stations.addLayer(marker);
    bounds.push([s.latitude, s.longitude]);
  }
  if (at) {
    L()
      .circle([at.latitude, at.longitude], {
        radius: radiusM ?? 10_000,
        className: 'search-radius',
        interactive: false,
      })
      .addTo(layers.ev);
    L()
      .marker([at.latitude, at.longitude], {
        title: 'The EV',
        keyboard: false,
        icon: L().divIcon({ className: 'ev-pin', html: '<span>EV</span>', iconSize: [30, 20] }),
      })
      .addTo(layers.ev);
    bounds.push([at.latitude, at.longitude]);
  }
  refit = () => {
    m.invalidateSize();
    if (at)
      m.fitBounds(
        L()
          .latLng(at.latitude, at.longitude)
          .toBounds(2 * (radiusM ?? 10_000))
          .pad(0.05),
      );
    else if (bounds.length) m.fitBounds(L().latLngBounds(bounds).pad(0.3), { maxZoom: 15 });
    else m.setView([0, 0], 2);
  };
  // The container may have been hidden, or resized, since the map was made.
  refit();
}

/** What the map shows, fitted again when the screen turns or the window changes size. */
let refit = () => {};
window.addEventListener('resize', () => {
  if (map && !map.getContainer().closest('[hidden]')) refit();
});
