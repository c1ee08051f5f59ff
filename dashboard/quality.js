/*
 * The dashboard's "Placement quality" page (#quality): the replay reports
 * operators stored (`homing replay --publish NAME`, /v1/placement-reports),
 * newest first, and one of them drawn in plain SVG: its policies side by
 * side as the replay prints them (restore distances, transfers, bytes per
 * user-day, flapping, the goals), the trade-off between mean
 * restore distance and bytes sent with the Pareto front, and, when the
 * report has them, each policy's restore-distance CDF and its transfers per
 * day. It uses app.js's API calls (window.homing), so the same token.
 */
'use strict';

(() => {
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const GIB = 1073741824;
  const W = 640;
  const H = 340;
  const M = { left: 64, right: 16, top: 14, bottom: 42 };
  const COLOURS = ['#5ab0ff', '#3ccf8e', '#f5a524', '#ef4444', '#c084fc', '#f472b6', '#facc15',
    '#2dd4bf', '#fb923c', '#a3e635'];
  // The replay's goals: a policy's figure over a yardstick's, and the bound it should stay under.
  const GOALS = [
    ['oracle_distance', 'mean ÷ oracle', 1.5],
    ['home_distance', 'mean ÷ fixed home', 0.5],
    ['naive_transfers', 'transfers ÷ naive', 0.2],
  ];
  const $ = (id) => document.getElementById(id);
  const page = { reports: [], shown: null, signedIn: false };

  function el(name, attrs, text) {
    const node = document.createElementNS(SVG_NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function cell(tr, text, cls) {
    const td = document.createElement('td');
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  const fixed = (v, digits) => (Number.isFinite(v) ? v.toFixed(digits) : '–');
  const colour = (i) => COLOURS[i % COLOURS.length];

  // The distances the replay measured: at restores, or at every report when the history had none.
  function distances(report, p) {
    return report.measured_at === 'reports' && p.reports ? p.reports : p.restores;
  }

  // The replay's own marks when it wrote them; else the front among the engine's policies.
  function pareto(report) {
    const ps = report.policies;
    if (ps.some((p) => typeof p.pareto === 'boolean')) return ps.map((p) => p.pareto === true);
    return ps.map((p) => p.kind === 'engine' && !ps.some((q) => q !== p && q.kind === 'engine'
      && distances(report, q).mean_km <= distances(report, p).mean_km && q.bytes <= p.bytes
      && (distances(report, q).mean_km < distances(report, p).mean_km || q.bytes < p.bytes)));
  }

  /* ---- axes ------------------------------------------------------------------ */

  // Round steps (1, 2, 5 × 10^n) covering min to max.
  function ticks(min, max) {
    const lo = Math.max(0, min);
    const hi = max > lo ? max : lo + (lo > 0 ? lo / 10 : 1);
    const raw = (hi - lo) / 5;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
    const out = [];
    for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) {
      out.push(+v.toPrecision(12));
    }
    if (out[out.length - 1] < hi) out.push(+(out[out.length - 1] + step).toPrecision(12));
    return out;
  }

  // A linear scale from [min, max] (widened to round ticks) onto [from, to].
  function scale(min, max, from, to) {
    const t = ticks(min, max);
    const lo = t[0];
    const hi = t[t.length - 1];
    const f = (v) => from + ((to - from) * (v - lo)) / (hi - lo);
    f.ticks = t;
    return f;
  }

  // Labels beside their points, moved down while they would cover one already placed,
  // and to the left of points near the right edge.
  function label(svg, placed, x, y, text) {
    const width = 6.5 * text.length;
    const left = x + 8 + width > W - M.right;
    let ly = y - 6;
    while (placed.some((b) => Math.abs(b.y - ly) < 11 && b.x0 < x + 8 + width && x - 8 - width < b.x1)) ly += 12;
    if (ly > H - M.bottom - 2) return; // no room left: the point's title still names it
    placed.push({ x0: left ? x - 8 - width : x + 8, x1: left ? x - 8 : x + 8 + width, y: ly });
    svg.appendChild(el('text', { class: 'point-label', x: left ? x - 8 : x + 8, y: ly,
      'text-anchor': left ? 'end' : 'start' }, text));
  }

  function frame(svg, x, y, xLabel, yLabel, xFormat, yFormat) {
    const g = el('g', { class: 'axes' });
    for (const v of y.ticks) {
      g.appendChild(el('line', { class: 'grid', x1: M.left, x2: W - M.right, y1: y(v), y2: y(v) }));
      g.appendChild(el('text', { x: M.left - 6, y: y(v) + 4, 'text-anchor': 'end' }, yFormat(v)));
    }
    for (const v of x.ticks) {
      g.appendChild(el('line', { class: 'tick', x1: x(v), x2: x(v), y1: H - M.bottom, y2: H - M.bottom + 4 }));
      g.appendChild(el('text', { x: x(v), y: H - M.bottom + 16, 'text-anchor': 'middle' }, xFormat(v)));
    }
    g.appendChild(el('line', { class: 'axis', x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom }));
    g.appendChild(el('line', { class: 'axis', x1: M.left, x2: M.left, y1: M.top, y2: H - M.bottom }));
    g.appendChild(el('text', { class: 'label', x: (M.left + W - M.right) / 2, y: H - 6, 'text-anchor': 'middle' }, xLabel));
    g.appendChild(el('text', { class: 'label', x: 12, y: (M.top + H - M.bottom) / 2, 'text-anchor': 'middle',
      transform: `rotate(-90 12 ${(M.top + H - M.bottom) / 2})` }, yLabel));
    svg.appendChild(g);
  }

  function chart(id) {
    const svg = $(id);
    svg.replaceChildren();
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    return svg;
  }

  function absent(id, note) {
    const svg = chart(id);
    svg.appendChild(el('text', { class: 'absent', x: W / 2, y: H / 2, 'text-anchor': 'middle' }, note));
    svg.dataset.absent = 'true';
  }

  // A sweep has up to 60 policies: lines for the policies named, not swept, and the swept
  // ones on the Pareto front, at most MAX_LINES; the legend says how many are left out.
  const MAX_LINES = 10;
  function drawn(rows, front) {
    const keep = rows.filter(([p, i]) => !p.swept || front[i]).slice(0, MAX_LINES);
    return { keep, left: rows.length - keep.length };
  }

  function legend(svg, names, left) {
    if (left > 0) names = names.concat([[`${left} more not drawn (swept, off the front)`, -1]]);
    // as far right as its longest name lets it
    const x0 = Math.max(M.left + 8, W - M.right - 30 - 6 * Math.max(...names.map(([n]) => n.length)));
    names.forEach(([name, i], k) => {
      const y = M.top + 6 + k * 15;
      if (i >= 0) {
        svg.appendChild(el('line', { x1: x0, x2: x0 + 18, y1: y, y2: y, stroke: colour(i), class: 'series' }));
      }
      svg.appendChild(el('text', { class: 'legend', x: x0 + 24, y: y + 4 }, name));
    });
  }

  /* ---- the report ------------------------------------------------------------- */

  function drawTable(report, front) {
    const body = $('quality-table').tBodies[0];
    body.replaceChildren();
    report.policies.forEach((p, i) => {
      const d = distances(report, p);
      const tr = document.createElement('tr');
      tr.dataset.policy = p.name;
      const name = cell(tr, `${p.name}${front[i] ? ' *' : ''}`, 'policy');
      name.appendChild(el('svg', { class: 'swatch', viewBox: '0 0 10 10' }))
        .appendChild(el('circle', { cx: 5, cy: 5, r: 4, fill: colour(i) }));
      cell(tr, p.kind);
      cell(tr, fixed(d.mean_km, 1), 'num');
      cell(tr, fixed(d.p50_km, 1), 'num');
      cell(tr, fixed(d.p95_km, 1), 'num');
      cell(tr, fixed(d.p99_km, 1), 'num');
      cell(tr, String(p.transfers), 'num');
      cell(tr, report.user_days > 0 ? fixed(p.bytes / GIB / report.user_days, 2) : '–', 'num');
      cell(tr, p.flaps === undefined ? '–'
        : `${p.flaps} (${fixed(p.transfers ? (100 * p.flaps) / p.transfers : 0, 1)} %)`, 'num');
      for (const [key, , bound] of GOALS) {
        const r = p.goals ? p.goals[key] : undefined;
        if (r === undefined) cell(tr, '–', 'num');
        else cell(tr, `${fixed(r, 3)} ${r <= bound ? 'met' : 'not met'}`, r <= bound ? 'num met' : 'num unmet');
      }
      body.appendChild(tr);
    });
  }

  function drawTradeoff(report, front) {
    const svg = chart('quality-tradeoff');
    const pts = report.policies.map((p, i) => ({ p, i, x: distances(report, p).mean_km, y: p.bytes / GIB }));
    // Distances from the nearest policy's (they differ by a few %), bytes from 0.
    const x = scale(Math.min(...pts.map((q) => q.x)), Math.max(...pts.map((q) => q.x)), M.left, W - M.right);
    const y = scale(0, Math.max(...pts.map((q) => q.y)), H - M.bottom, M.top);
    frame(svg, x, y, `mean restore distance (km, at ${report.measured_at || 'restores'})`, 'GiB sent',
      (v) => String(Math.round(v)), (v) => String(+v.toPrecision(3)));
    const onFront = pts.filter((q) => front[q.i]).sort((a, b) => a.x - b.x);
    if (onFront.length > 1) {
      svg.appendChild(el('polyline', { class: 'front',
        points: onFront.map((q) => `${x(q.x)},${y(q.y)}`).join(' ') }));
    }
    const placed = [];
    const named = new Set(drawn(pts.map((q) => [q.p, q.i]), front).keep.map(([p]) => p));
    for (const q of pts) {
      const dot = el('circle', { class: `point${front[q.i] ? ' pareto' : ''}`, cx: x(q.x), cy: y(q.y),
        r: front[q.i] ? 6 : 4.5, fill: colour(q.i), 'data-policy': q.p.name });
      dot.appendChild(el('title', {}, `${q.p.name}: ${fixed(q.x, 1)} km, ${fixed(q.y, 2)} GiB`));
      svg.appendChild(dot);
      if (named.has(q.p)) label(svg, placed, x(q.x), y(q.y), q.p.name);
    }
    svg.dataset.absent = 'false';
  }

  function drawCdf(report, front) {
    const all = report.policies.map((p, i) => [p, i]).filter(([p]) => Array.isArray(p.restore_cdf) && p.restore_cdf.length);
    const { keep: have, left } = drawn(all, front);
    if (!have.length) {
      absent('quality-cdf', 'the restore-distance CDF is not in this report');
      return;
    }
    const svg = chart('quality-cdf');
    const x = scale(0, Math.max(...have.flatMap(([p]) => p.restore_cdf.map((pt) => pt[0]))), M.left, W - M.right);
    const y = scale(0, 1, H - M.bottom, M.top);
    frame(svg, x, y, 'restore distance (km)', 'share of restores',
      (v) => String(Math.round(v)), (v) => `${Math.round(v * 100)} %`);
    for (const [p, i] of have) {
      svg.appendChild(el('polyline', { class: 'series', stroke: colour(i), 'data-policy': p.name,
        points: p.restore_cdf.map(([km, share]) => `${x(km)},${y(share)}`).join(' ') }));
    }
    legend(svg, have.map(([p, i]) => [p.name, i]), left);
    svg.dataset.absent = 'false';
  }

  // A policy's days: per_day, or the older transfers_per_day ({day: transfers}, no bytes).
  function daysOf(p) {
    if (Array.isArray(p.per_day)) return p.per_day;
    if (p.transfers_per_day && typeof p.transfers_per_day === 'object') {
      return Object.entries(p.transfers_per_day).map(([day, transfers]) => ({ day, transfers }));
    }
    return [];
  }

  function drawPerDay(report, front) {
    const all = report.policies.map((p, i) => [p, i, daysOf(p)]).filter(([, , d]) => d.length);
    const { keep: have, left } = drawn(all, front);
    if (!have.length) {
      absent('quality-days', 'transfers per day are not in this report');
      return;
    }
    const svg = chart('quality-days');
    const days = [...new Set(have.flatMap(([, , ds]) => ds.map((d) => d.day)))].sort();
    const at = new Map(days.map((d, k) => [d, k]));
    const x = (k) => M.left + ((W - M.left - M.right) * (days.length > 1 ? k / (days.length - 1) : 0.5));
    x.ticks = [];
    const y = scale(0, Math.max(...have.flatMap(([, , ds]) => ds.map((d) => d.transfers))), H - M.bottom, M.top);
    frame(svg, x, y, `UTC day (${days[0]} to ${days[days.length - 1]})`, 'transfers queued',
      (v) => String(v), (v) => String(+v.toPrecision(3)));
    const every = Math.max(1, Math.ceil(days.length / 8));
    days.forEach((d, k) => {
      if (k % every === 0) {
        svg.appendChild(el('text', { class: 'axes-day', x: x(k), y: H - M.bottom + 16, 'text-anchor': 'middle' }, d.slice(5)));
      }
    });
    for (const [p, i, ds] of have) {
      const sorted = [...ds].sort((a, b) => (a.day < b.day ? -1 : 1));
      svg.appendChild(el('polyline', { class: 'series', stroke: colour(i), 'data-policy': p.name,
        points: sorted.map((d) => `${x(at.get(d.day))},${y(d.transfers)}`).join(' ') }));
      for (const d of sorted) {
        const dot = el('circle', { class: 'day', cx: x(at.get(d.day)), cy: y(d.transfers), r: 2.5, fill: colour(i) });
        const sent = d.bytes === undefined ? '' : `, ${window.homing.bytes(d.bytes)}`;
        dot.appendChild(el('title', {}, `${p.name}, ${d.day}: ${d.transfers} transfers${sent}`));
        svg.appendChild(dot);
      }
    }
    legend(svg, have.map(([p, i]) => [p.name, i]), left);
    svg.dataset.absent = 'false';
  }

  function drawReport(item) {
    const { report } = item;
    const front = pareto(report);
    $('quality-title').textContent = item.name;
    $('quality-meta').textContent = [
      `report ${item.id}, stored ${item.created_at.replace('T', ' ').replace(/\.\d+Z$/, ' UTC')} by ${item.created_by}`,
      report.users !== undefined ? `${report.users} users` : null,
      report.user_days !== undefined ? `${fixed(report.user_days, 0)} user-days` : null,
      report.restores !== undefined ? `${report.restores} restores` : null,
      report.measured_at === 'reports' ? 'distances at every credible report (no restores)' : null,
    ].filter(Boolean).join(' · ');
    drawTable(report, front);
    drawTradeoff(report, front);
    drawCdf(report, front);
    drawPerDay(report, front);
    $('quality-report').hidden = false;
    $('quality-report').dataset.id = String(item.id);
  }

  /* ---- the list, the page ------------------------------------------------------ */

  function drawList() {
    const body = $('quality-reports').tBodies[0];
    body.replaceChildren();
    for (const r of page.reports) {
      const tr = document.createElement('tr');
      tr.dataset.id = String(r.id);
      if (r.id === page.shown) tr.className = 'selected';
      cell(tr, r.name);
      cell(tr, r.created_at.slice(0, 16).replace('T', ' '));
      cell(tr, r.created_by);
      cell(tr, r.summary.users === undefined ? '–' : String(r.summary.users), 'num');
      const names = (r.summary.policies || []).map((p) => p.name);
      cell(tr, names.length > 4 ? `${names.slice(0, 4).join(', ')} and ${names.length - 4} more`
        : names.join(', '));
      body.appendChild(tr);
    }
    $('quality-empty').hidden = page.reports.length > 0;
  }

  async function open(id) {
    page.shown = id;
    drawList();
    $('quality-message').textContent = '';
    try {
      const { data } = await window.homing.api('GET', `/v1/placement-reports/${id}`);
      if (page.shown === id) drawReport(data);
    } catch (e) {
      $('quality-message').textContent = e.message;
    }
  }

  async function load() {
    try {
      page.reports = await window.homing.all('/v1/placement-reports');
    } catch (e) {
      $('quality-message').textContent = e.message;
      return;
    }
    const wanted = Number((window.location.hash.split('/')[1]) || NaN);
    const first = page.reports.find((r) => r.id === wanted) || page.reports[0];
    drawList();
    if (first) await open(first.id);
    else $('quality-report').hidden = true;
  }

  // #quality shows this page (loaded once signed in), anything else the map.
  function route() {
    const quality = window.location.hash.startsWith('#quality');
    const wasQuality = !$('quality').hidden;
    $('quality').hidden = !quality;
    $('stats').hidden = quality;
    document.querySelector('main').hidden = quality;
    $('nav-map').classList.toggle('current', !quality);
    $('nav-quality').classList.toggle('current', quality);
    // The map measured itself while hidden: let it measure again.
    if (wasQuality && !quality) window.dispatchEvent(new Event('resize'));
    if (quality && page.signedIn) load();
  }

  $('quality-reports').tBodies[0].addEventListener('click', (evt) => {
    const tr = evt.target.closest('tr');
    if (tr) open(Number(tr.dataset.id));
  });
  window.addEventListener('hashchange', route);
  window.addEventListener('homing-signed-in', () => {
    page.signedIn = true;
    route();
  });
  route();
})();
