// The stations on a plain SVG plot (no tiles: the Pi may be offline). Equirectangular, with the
// longitude scaled by cos(latitude) so that a town's distances look right.
import { short, stars } from './format.js';

const NS = 'http://www.w3.org/2000/svg';
const W = 640;
const H = 360;
const PAD = 40;

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Red → amber → green by mean rating; grey when unrated. Dark enough for white labels. */
function colour(s) {
  if (Number(s.ratingCount) === 0) return '#5f6368';
  const t = Math.max(0, Math.min(1, (Number(s.meanRating) / 100 - 1) / 4));
  return `hsl(${Math.round(t * 120)}, 70%, 32%)`;
}

export function drawMap(container, stations, ev) {
  const points = stations.map((s) => ({ lat: s.latitude, lon: s.longitude }));
  if (ev) points.push({ lat: ev.latitude, lon: ev.longitude });
  container.replaceChildren();
  if (points.length === 0) {
    container.textContent = 'No station has registered yet.';
    return;
  }
  const lats = points.map((p) => p.lat);
  const lons = points.map((p) => p.lon);
  const midLat = (Math.min(...lats) + Math.max(...lats)) / 2;
  const k = Math.cos((midLat * Math.PI) / 180);
  const spanX = Math.max((Math.max(...lons) - Math.min(...lons)) * k, 0.002);
  const spanY = Math.max(Math.max(...lats) - Math.min(...lats), 0.002);
  const scale = Math.min((W - 2 * PAD) / spanX, (H - 2 * PAD) / spanY);
  const cx = ((Math.max(...lons) + Math.min(...lons)) / 2) * k;
  const cy = (Math.max(...lats) + Math.min(...lats)) / 2;
  const x = (lon) => W / 2 + (lon * k - cx) * scale;
  const y = (lat) => H / 2 - (lat - cy) * scale;

  const root = svg('svg', {
    viewBox: `0 0 ${W} ${H}`,
    role: 'group',
    'aria-labelledby': 'map-caption',
    class: 'map-svg',
  });
  root.append(svg('rect', { x: 0, y: 0, width: W, height: H, class: 'map-bg' }));
  // A scale bar: metres per pixel from the degrees plotted.
  const metresPerPx = 111_320 / scale;
  const barM =
    [50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000].find((m) => m / metresPerPx > 60) ??
    100_000;
  const barPx = barM / metresPerPx;
  root.append(
    svg('line', { x1: PAD, y1: H - 14, x2: PAD + barPx, y2: H - 14, class: 'map-scale' }),
    svg('text', { x: PAD, y: H - 20, class: 'map-label' }, barM >= 1000 ? `${barM / 1000} km` : `${barM} m`),
  );
  for (const s of stations) {
    const label = `Station ${s.hcs}: ${stars(s.meanRating, s.ratingCount)}, ${s.ratingCount} ratings, ${s.status}`;
    const link = svg('a', { href: `#sessions?member=${s.hcs}`, 'aria-label': label });
    link.append(
      svg('title', {}, label),
      svg('circle', { cx: x(s.longitude), cy: y(s.latitude), r: 11, fill: colour(s), class: 'map-station' }),
      svg('text', { x: x(s.longitude) + 15, y: y(s.latitude) + 5, class: 'map-label' }, short(s.hcs)),
    );
    root.append(link);
  }
  if (ev) {
    const g = svg('g', { 'aria-label': 'The EV' });
    g.append(
      svg('title', {}, 'The EV'),
      svg('rect', { x: x(ev.longitude) - 7, y: y(ev.latitude) - 7, width: 14, height: 14, class: 'map-ev' }),
      svg('text', { x: x(ev.longitude) + 12, y: y(ev.latitude) - 10, class: 'map-label' }, 'EV'),
    );
    root.append(g);
  }
  container.append(root);
}
