/* SVG line charts of a job's per-epoch series (loss, validation metrics).
 */
import { COLORS } from './constants.js';
import { esc } from './dom.js';
import { t } from './i18n.js';
import { fmtNum } from './format.js';

export function splitSeries(names) {
  const loss = names.filter((n) => /loss/i.test(n));
  const other = names.filter((n) => !/loss/i.test(n) && !/^lr\b|\/lr|^lr\//i.test(n) && !/time|epoch/i.test(n));
  return { loss, other: other.slice(0, 5) };
}

/** An SVG line chart: one polyline per series over the epochs, a circle per point. */
export function chartSvg(kind, title, epochs, series) {
  const W = 300; const H = 172; const L = 40; const R = 10; const T = 22; const B = 122;
  const names = Object.keys(series);
  const values = [];
  names.forEach((n) => series[n].forEach((v) => { if (Number.isFinite(v)) values.push(v); }));
  let svg = `<svg class="chart chart-${kind}" data-testid="chart-${kind}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(title)}">`;
  svg += `<text class="title" x="${L}" y="14">${esc(title)}</text>`;
  if (!epochs.length || !values.length) {
    svg += `<text class="empty" x="${W / 2}" y="${(T + B) / 2}" text-anchor="middle">${esc(t('no_points'))}</text></svg>`;
    return svg;
  }
  let lo = Math.min(...values); let hi = Math.max(...values);
  if (lo === hi) { const d = Math.abs(lo) * 0.1 || 1; lo -= d; hi += d; }
  const pad = (hi - lo) * 0.08; lo -= pad; hi += pad;
  const e0 = epochs[0]; const e1 = epochs[epochs.length - 1];
  const x = (e) => (e1 === e0 ? (L + W - R) / 2 : L + ((e - e0) / (e1 - e0)) * (W - R - L));
  const y = (v) => B - ((v - lo) / (hi - lo)) * (B - T);
  for (let i = 0; i <= 3; i++) {
    const v = lo + ((hi - lo) * i) / 3; const yy = y(v).toFixed(1);
    svg += `<line class="grid" x1="${L}" x2="${W - R}" y1="${yy}" y2="${yy}"/><text x="${L - 4}" y="${yy}" dy="3" text-anchor="end">${esc(fmtNum(v))}</text>`;
  }
  const step = Math.max(1, Math.ceil(epochs.length / 8));
  epochs.forEach((e, i) => {
    if (i % step === 0 || i === epochs.length - 1) svg += `<text x="${x(e).toFixed(1)}" y="${B + 13}" text-anchor="middle">${e}</text>`;
  });
  names.forEach((n, si) => {
    const color = COLORS[si % COLORS.length];
    let d = ''; let pen = false;
    series[n].forEach((v, i) => {
      if (!Number.isFinite(v)) { pen = false; return; }
      d += `${pen ? 'L' : 'M'}${x(epochs[i]).toFixed(1)} ${y(v).toFixed(1)} `;
      pen = true;
    });
    if (d) svg += `<path d="${d.trim()}" fill="none" stroke="${color}" stroke-width="2" stroke-linejoin="round"/>`;
    series[n].forEach((v, i) => {
      if (!Number.isFinite(v)) return;
      svg += `<circle class="pt" data-series="${esc(n)}" data-epoch="${epochs[i]}" cx="${x(epochs[i]).toFixed(1)}" cy="${y(v).toFixed(1)}" r="3" fill="${color}"><title>${esc(n)} @ ${epochs[i]}: ${esc(fmtNum(v))}</title></circle>`;
    });
    const lx = L + (si % 2) * 130; const ly = B + 28 + Math.floor(si / 2) * 12;
    svg += `<rect x="${lx}" y="${ly - 7}" width="10" height="3" fill="${color}"/><text x="${lx + 14}" y="${ly - 3}">${esc(n)}</text>`;
  });
  return svg + '</svg>';
}
