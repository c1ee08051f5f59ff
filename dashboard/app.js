/*
 * homing's operator dashboard: plain JavaScript over the REST API.
 *
 * A world map (Natural Earth country outlines from world-atlas, projected by
 * d3-geo) with every datacenter (colour: status; ring: how full; halo: how
 * many snapshots it holds), the transfers in flight as great-circle arcs,
 * and the live numbers: queue depth, decisions per minute, ingest rate.
 * Clicking a datacenter lists its snapshots and transfers; an operator can
 * drain it (or activate it again) from there, plan and run its evacuation,
 * see its failovers (each snapshot activated from its replica, with the
 * versions lost, or unrecoverable), fail back, and rehearse a failover
 * (a test's throwaway VMs, then their cleanup). Clicking a snapshot compares
 * two of its versions (configuration keys side by side, a bar of the
 * changed disk regions, which the agent computes) and lets an operator pick
 * items of one to compose a new version from the other, after a
 * confirmation that says what will change. Everything is polled every
 * few seconds with the operator's bearer token; nothing leaves this server.
 * The "Placement quality" page is quality.js's, through window.homing.
 */
'use strict';

(() => {
  const POLL_MS = 3000;
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const $ = (id) => document.getElementById(id);

  const state = {
    token: localStorage.getItem('homing.token'),
    me: null,
    world: null,
    dcs: new Map(),
    transfers: [],
    selected: null,
    snapshot: null,
    diff: null,
    evac: null,
    failovers: [],
    failover: null,
    foTest: null,
    filesKey: null,
    lastIngest: null,
    timer: null,
  };
  let projection = null;
  let geoPath = null;
  let layers = null;
  let markers = new Map();

  /* ---- the API ---------------------------------------------------------- */

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  async function api(method, url, body, headers) {
    const h = Object.assign({ Authorization: `Bearer ${state.token}` }, headers || {});
    if (body !== undefined) h['Content-Type'] = 'application/json';
    const resp = await fetch(url, {
      method,
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await resp.text();
    const data = text ? JSON.parse(text) : null;
    if (resp.status === 401) {
      askForToken('The token was refused: it is unknown or was revoked.');
    }
    if (!resp.ok) throw new ApiError(resp.status, (data && data.detail) || resp.statusText);
    return { data, etag: resp.headers.get('ETag') };
  }

  /* Every page of a list, following next_cursor. */
  async function all(url) {
    let items = [];
    let cursor = null;
    do {
      const sep = url.includes('?') ? '&' : '?';
      const page = `${url}${sep}limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const { data } = await api('GET', page);
      items = items.concat(data.items);
      cursor = data.next_cursor;
    } while (cursor && items.length < 20000);
    return items;
  }

  /* ---- drawing helpers ---------------------------------------------------- */

  function el(name, attrs, children) {
    const node = document.createElementNS(SVG_NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    for (const c of children || []) node.appendChild(c);
    return node;
  }

  function title(text) {
    const t = el('title');
    t.textContent = text;
    return t;
  }

  // A running transfer's progress as the agent last reported it.
  function progress(t) {
    if (t.state !== 'running' || !t.bytes_total) return '–';
    const pct = Math.min(100, Math.floor((100 * t.bytes_done) / t.bytes_total));
    return `${pct} % · ${bytes(t.bytes_done)} of ${bytes(t.bytes_total)}`;
  }

  function bytes(n) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i += 1;
    }
    return `${n.toFixed(n < 10 && i ? 1 : 0)} ${units[i]}`;
  }

  // Priority levels as the API and the transfer queue read them: 1 first.
  function level(p) {
    return p === 1 ? '1 (most urgent)' : p === 5 ? '5 (least urgent)' : String(p);
  }

  function fullness(dc) {
    return dc.capacity_bytes > 0 ? Math.min(1, dc.used_bytes / dc.capacity_bytes) : 0;
  }

  /* ---- the map ------------------------------------------------------------ */

  function setupMap() {
    const svg = $('map');
    const { width, height } = svg.getBoundingClientRect();
    svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
    svg.replaceChildren();
    projection = d3.geoNaturalEarth1().fitExtent([[10, 10], [width - 10, height - 10]],
      { type: 'Sphere' });
    geoPath = d3.geoPath(projection);
    svg.appendChild(el('path', { class: 'sphere', d: geoPath({ type: 'Sphere' }) }));
    svg.appendChild(el('path', { class: 'graticule', d: geoPath(d3.geoGraticule10()) }));
    const countries = el('g', { id: 'countries' });
    if (state.world) {
      const features = topojson.feature(state.world, state.world.objects.countries).features;
      for (const f of features) {
        countries.appendChild(el('path', { class: 'country', d: geoPath(f) },
          [title(f.properties.name || '')]));
      }
    }
    svg.appendChild(countries);
    layers = { halos: el('g', { id: 'halos' }), arcs: el('g', { id: 'arcs' }), dcs: el('g', { id: 'dcs' }) };
    markers = new Map();
    svg.append(layers.halos, layers.arcs, layers.dcs);
  }

  function showTooltip(evt, text) {
    const tip = $('tooltip');
    const box = $('map-wrap').getBoundingClientRect();
    tip.textContent = text;
    tip.style.left = `${evt.clientX - box.left + 12}px`;
    tip.style.top = `${evt.clientY - box.top + 12}px`;
    tip.hidden = false;
  }

  /* One set of nodes per datacenter (markers), updated in place: a poll never
   * pulls a marker from under the pointer. */

  function marker(id) {
    let m = markers.get(id);
    if (m) return m;
    m = {
      halo: el('circle', { class: 'halo', 'data-id': id }),
      g: el('g', { class: 'dc-group' }),
      track: el('circle', { class: 'fill-track', r: 8 }),
      ring: el('circle', { class: 'fill-ring', r: 8 }),
      dot: el('circle', { class: 'dc', r: 5, 'data-id': id, tabindex: 0 }),
    };
    m.g.append(m.track, m.ring, m.dot);
    m.dot.addEventListener('mousemove', (evt) => showTooltip(evt, m.label));
    m.dot.addEventListener('mouseleave', () => { $('tooltip').hidden = true; });
    m.dot.addEventListener('click', () => select(id));
    m.dot.addEventListener('keydown', (evt) => { if (evt.key === 'Enter') select(id); });
    layers.halos.appendChild(m.halo);
    layers.dcs.appendChild(m.g);
    markers.set(id, m);
    return m;
  }

  /* Where each marker goes. Datacenters of one city (several providers in
   * Paris) would hide each other: they are fanned out around the city, so
   * every one of them can be seen and clicked. */
  function layout() {
    const groups = new Map();
    for (const dc of [...state.dcs.values()].sort((a, b) => (a.id < b.id ? -1 : 1))) {
      const p = projection([dc.lon, dc.lat]);
      if (!p) continue;
      const key = `${Math.round(p[0] / 6)},${Math.round(p[1] / 6)}`;
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push({ dc, x: p[0], y: p[1] });
    }
    const placed = [];
    for (const group of groups.values()) {
      const spread = group.length > 1 ? 7 + 2 * group.length : 0;
      group.forEach((m, i) => {
        const angle = (2 * Math.PI * i) / group.length - Math.PI / 2;
        placed.push({ dc: m.dc, x: m.x + spread * Math.cos(angle), y: m.y + spread * Math.sin(angle) });
      });
    }
    return placed;
  }

  function drawDatacenters() {
    const ring = 2 * Math.PI * 8;
    for (const [id, m] of markers) {
      if (!state.dcs.has(id)) {
        m.halo.remove();
        m.g.remove();
        markers.delete(id);
      }
    }
    for (const { dc, x, y } of layout()) {
      const m = marker(dc.id);
      m.halo.setAttribute('cx', x);
      m.halo.setAttribute('cy', y);
      m.halo.setAttribute('r', dc.snapshots > 0 ? 6 + 3.2 * Math.sqrt(dc.snapshots) : 0);
      for (const c of [m.track, m.ring, m.dot]) {
        c.setAttribute('cx', x);
        c.setAttribute('cy', y);
      }
      m.ring.setAttribute('stroke-dasharray', `${(fullness(dc) * ring).toFixed(2)} ${ring.toFixed(2)}`);
      m.ring.setAttribute('transform', `rotate(-90 ${x} ${y})`);
      m.dot.setAttribute('class', `dc ${dc.status}${dc.id === state.selected ? ' selected' : ''}`);
      m.dot.setAttribute('data-status', dc.status);
      m.label = `${dc.name} (${dc.id}) — ${dc.status}, ${dc.snapshots} snapshots, ` +
        `${Math.round(fullness(dc) * 100)}% full`;
    }
  }

  function drawTransfers() {
    layers.arcs.replaceChildren();
    let drawn = 0;
    for (const t of state.transfers) {
      const from = state.dcs.get(t.from_dc);
      const to = state.dcs.get(t.to_dc);
      if (!from || !to) continue;
      // A great circle: d3-geo interpolates the line on the sphere.
      const d = geoPath({ type: 'LineString', coordinates: [[from.lon, from.lat], [to.lon, to.lat]] });
      if (!d) continue;
      layers.arcs.appendChild(el('path', {
        class: `transfer-arc ${t.state}`, d, 'data-transfer-id': t.id,
        'data-from': t.from_dc, 'data-to': t.to_dc,
      }, [title(`transfer ${t.id}: ${t.snapshot_id} ${t.from_dc} → ${t.to_dc} (${t.state}${t.state === 'running' ? ', ' + progress(t) : ''})`)]));
      const [x, y] = projection([to.lon, to.lat]);
      layers.arcs.appendChild(el('circle', { class: 'arc-end', cx: x, cy: y, r: 2.5 }));
      drawn += 1;
    }
    $('stat-arcs').textContent = drawn;
  }

  /* ---- numbers ------------------------------------------------------------- */

  function showStats(stats) {
    const t = stats.transfers;
    $('stat-queue').textContent = t.queued + t.running;
    $('stat-queue-sub').textContent = `${t.queued} queued, ${t.running} running, ` +
      `${t.failed_last_hour} failed in the last hour`;
    $('stat-decisions').textContent = stats.decisions_last_minute;
    const now = Date.now();
    const total = stats.ingest.reports_accepted_total;
    if (state.lastIngest && now > state.lastIngest.at) {
      const rate = Math.max(0, (total - state.lastIngest.total) / ((now - state.lastIngest.at) / 1000));
      $('stat-ingest').textContent = rate < 10 ? rate.toFixed(1) : Math.round(rate);
    }
    state.lastIngest = { at: now, total };
    const d = stats.datacenters;
    $('stat-dcs').textContent = d.active + d.draining + d.down;
    $('stat-dcs-sub').textContent = `${d.active} active, ${d.draining} draining, ${d.down} down`;
  }

  /* ---- the datacenter panel -------------------------------------------------- */

  function row(cells) {
    const tr = document.createElement('tr');
    for (const c of cells) {
      const td = document.createElement('td');
      td.textContent = c;
      tr.appendChild(td);
    }
    return tr;
  }

  // A snapshot's warm replicas: where, and how far behind (red past the RPO);
  // a copy pre-staged for a trip says so, and until when.
  function replicasCell(s) {
    const td = document.createElement('td');
    const reps = s.replicas || [];
    const what = (r) => (r.reason === 'prestage'
      ? `${r.datacenter_id} (pre-staged for a trip until ${r.ends_at})` : r.datacenter_id);
    td.textContent = reps.length ? reps.map((r) => (r.lag_s > 0
      ? `${what(r)}: ${Math.round(r.lag_s)} s, ${bytes(r.bytes_behind)} behind`
      : `${what(r)}: current`)).join('; ') : '–';
    if (reps.some((r) => r.rpo_breached)) {
      td.className = 'error';
      td.title = 'a replica lags beyond its priority level\'s RPO';
    }
    return td;
  }

  function message(text, error) {
    const m = $('dc-message');
    m.textContent = text;
    m.className = error ? 'error' : '';
  }

  function showPanel() {
    const dc = state.dcs.get(state.selected);
    if (!dc) return;
    $('dc-panel').hidden = false;
    $('dc-panel').dataset.id = dc.id;
    $('dc-title').textContent = dc.name;
    $('dc-where').textContent = [dc.id, dc.provider, dc.city, dc.country_code].filter(Boolean).join(' · ');
    $('dc-status').textContent = dc.status;
    $('dc-status').className = dc.status;
    $('dc-used').textContent = dc.capacity_bytes > 0
      ? `${bytes(dc.used_bytes)} of ${bytes(dc.capacity_bytes)} (${Math.round(fullness(dc) * 100)}%)`
      : `${bytes(dc.used_bytes)} (no capacity set)`;
    $('dc-snapshot-count').textContent = dc.snapshots;
    const mayAct = state.me && (state.me.role === 'operator' || state.me.role === 'admin');
    $('drain').disabled = !mayAct || dc.status === 'draining';
    $('activate').disabled = !mayAct || dc.status === 'active';
    $('drain').title = mayAct ? '' : 'needs an operator or admin token';
  }

  async function loadPanelLists(id) {
    const [transfers, snapshots] = await Promise.all([
      api('GET', `/v1/transfers?datacenter_id=${encodeURIComponent(id)}&state=queued,running&limit=100`),
      api('GET', `/v1/snapshots?datacenter_id=${encodeURIComponent(id)}&limit=100`),
    ]);
    if (state.selected !== id) return;
    $('dc-transfers').tBodies[0].replaceChildren(...transfers.data.items.map((t) =>
      row([t.id, t.snapshot_id, `${t.from_dc || '–'} → ${t.to_dc}`, t.state, progress(t)])));
    $('dc-snapshots').tBodies[0].replaceChildren(...snapshots.data.items.map((s) => {
      const tr = row([s.id, s.user_id, level(s.priority), bytes(s.size_bytes)]);
      tr.appendChild(replicasCell(s));
      return tr;
    }));
  }

  /* ---- an evacuation of the selected datacenter: its plan, its progress ------- */

  // What the plan says, or how far it came: one line, then a row per level.
  function showEvacuation(e) {
    state.evac = e;
    const mayAct = state.me && (state.me.role === 'operator' || state.me.role === 'admin');
    $('evac-run').hidden = !e || e.state !== 'planned' || !mayAct;
    $('evac-cancel').hidden = !e || !['planned', 'running'].includes(e.state) || !mayAct;
    $('evac-plan').disabled = !mayAct;
    $('evac-plan').title = mayAct ? 'a dry run: the plan, nothing changes' : 'needs an operator or admin token';
    if (!e) {
      $('evac-summary').textContent = 'none yet';
      $('evac-levels').tBodies[0].replaceChildren();
      return;
    }
    const sum = (k) => e.levels.reduce((n, l) => n + l[k], 0);
    let text = `evacuation ${e.id}: ${e.state}${e.dry_run && e.state !== 'planned' ? ' (from a dry run)' : ''} · `
      + `${e.snapshots} snapshots, ${sum('done')} done, ${sum('blocked')} cannot move`;
    if (e.items) {
      const to = {};
      for (const i of e.items) if (i.target_dc) to[i.target_dc] = (to[i.target_dc] || 0) + 1;
      const where = Object.entries(to).map(([dc, n]) => `${n} to ${dc}`).join(', ');
      const why = {};
      for (const i of e.items) if (i.blocked_reason) why[i.blocked_reason] = (why[i.blocked_reason] || 0) + 1;
      const whyText = Object.entries(why).map(([r, n]) => `${n} ${r}`).join(', ');
      text += ` · ${where || 'nothing to move'}${whyText ? ` · cannot move: ${whyText}` : ''}`;
    }
    $('evac-summary').textContent = text;
    $('evac-levels').tBodies[0].replaceChildren(...e.levels.map((l) => {
      const tr = row([level(l.level), l.state, `${l.done} of ${l.snapshots}`, l.blocked,
        bytes(l.bytes_planned), bytes(l.bytes_sent), l.errors.length ? l.errors[0].error : '–']);
      if (l.errors.length || l.failed) tr.cells[6].className = 'error';
      return tr;
    }));
  }

  async function loadEvacuation(id) {
    const { data } = await api('GET', `/v1/evacuations?datacenter_id=${encodeURIComponent(id)}&limit=1`);
    if (state.selected !== id) return;
    // A plan just made keeps its items (the list has none) while it stays the latest.
    const latest = data.items[0] || null;
    if (latest && state.evac && state.evac.id === latest.id && state.evac.items) latest.items = state.evac.items;
    showEvacuation(latest);
  }

  async function evacuate(action) {
    const id = state.selected;
    try {
      let reply;
      if (action === 'plan') {
        message(`planning the evacuation of ${id}…`);
        reply = await api('POST', `/v1/datacenters/${encodeURIComponent(id)}/evacuations`, { dry_run: true });
        message('the plan: nothing has changed; run it once the datacenter is draining');
      } else {
        reply = await api('POST', `/v1/evacuations/${state.evac.id}/${action}`);
        message(action === 'execute' ? 'evacuating, most urgent level first' : 'cancelled: what has not switched over stays');
      }
      showEvacuation(reply.data);
    } catch (e) {
      message(e.status === 403 ? 'your token may not do this (operator role needed)' : e.message, true);
    }
  }

  /* ---- failovers of the selected datacenter, and its rehearsals ---------------- */

  function mayAct() {
    return state.me && (state.me.role === 'operator' || state.me.role === 'admin');
  }

  // A failed-over snapshot: where it came back and what that cost; or why it could not.
  function outcome(i) {
    if (i.outcome === 'unrecoverable') {
      return i.recovered_at ? `recovered: back at ${i.from_dc}` : `unrecoverable until ${i.from_dc} returns`;
    }
    const lost = `${i.versions_lost} version${i.versions_lost === 1 ? '' : 's'} lost`;
    return `activated at ${i.to_dc} from its replica (v${i.version}); ${lost}`
      + (i.versions_lost ? ` (${bytes(i.data_loss_bytes)}, ${Math.round(i.data_loss_s)} s)` : '');
  }

  const total = (f, k) => f.levels.reduce((n, l) => n + l[k], 0);

  function showFailovers(list, items) {
    state.failovers = list;
    const dc = state.dcs.get(state.selected);
    const f = list.find((x) => x.id === state.failover) || null;
    $('fo-list').tBodies[0].replaceChildren(...list.map((x) => {
      const tr = row([x.id, x.created_at.replace('T', ' ').slice(0, 19), x.state,
        total(x, 'failed_over'), total(x, 'unrecoverable'), total(x, 'versions_lost')]);
      tr.dataset.id = x.id;
      if (x === f) tr.className = 'selected';
      return tr;
    }));
    $('fo-failback').hidden = !f || !mayAct() || !dc || dc.status !== 'active'
      || total(f, 'failed_over') <= total(f, 'failback_queued');
    if (!f) {
      $('fo-summary').textContent = list.length ? '' : 'never failed over';
      $('fo-snapshots').tBodies[0].replaceChildren();
      return;
    }
    const queued = total(f, 'failback_queued');
    $('fo-summary').textContent = `failover ${f.id}: ${f.state} · ${total(f, 'failed_over')} failed over `
      + `(${total(f, 'powered_on')} powered on), ${total(f, 'unrecoverable')} unrecoverable`
      + `${total(f, 'recovered') ? ` (${total(f, 'recovered')} recovered)` : ''}, `
      + `${total(f, 'versions_lost')} version${total(f, 'versions_lost') === 1 ? '' : 's'} lost `
      + `(${bytes(total(f, 'data_loss_bytes'))})`
      + (queued ? ` · failback: ${queued} queued, ${total(f, 'failed_back')} back` : '');
    if (items) {
      $('fo-snapshots').tBodies[0].replaceChildren(...items.map((i) => {
        const tr = row([i.snapshot_id, level(i.priority), outcome(i)]);
        if (i.outcome === 'unrecoverable' && !i.recovered_at) tr.cells[2].className = 'error';
        else if (i.versions_lost) tr.cells[2].className = 'lost';
        return tr;
      }));
    }
  }

  // The latest rehearsal of the selected datacenter: what came up where.
  function showFailoverTest(t) {
    state.foTest = t;
    const dc = state.dcs.get(state.selected);
    $('fotest-start').disabled = !mayAct() || !dc || dc.status === 'down' || (t && t.state === 'running');
    $('fotest-start').title = !mayAct() ? 'needs an operator or admin token'
      : dc && dc.status === 'down' ? 'the site is down: its failover is real'
        : 'a rehearsal: a throwaway VM at each replica site; nothing real changes';
    $('fotest-cleanup').hidden = !t || t.state !== 'running' || !mayAct();
    if (!t) {
      $('fotest-summary').textContent = 'no failover test yet';
      return;
    }
    const c = t.counts;
    const sites = [...new Set(t.vms.map((v) => v.datacenter_id))].join(', ');
    const failed = t.vms.find((v) => v.state === 'failed');
    $('fotest-summary').textContent = `failover test ${t.id}: ${t.state} · `
      + (c.vms ? `${c.vms} VM${c.vms === 1 ? '' : 's'} at ${sites}: ${c.powered_on} powered on, `
        + `${c.failed} failed, ${c.pending} pending, ${c.powered_off} off${failed ? ` · ${failed.reason}` : ''}`
        : 'no snapshot here has a warm replica');
    $('fotest-summary').className = failed ? 'error' : 'muted';
  }

  async function loadFailovers(id) {
    const q = encodeURIComponent(id);
    const [list, tests] = await Promise.all([
      api('GET', `/v1/failovers?datacenter_id=${q}&limit=20`),
      api('GET', '/v1/failover-tests?limit=50'),
    ]);
    if (state.selected !== id) return;
    const fos = list.data.items;
    if (!fos.some((f) => f.id === state.failover)) state.failover = fos.length ? fos[0].id : null;
    let items = null;
    if (state.failover) {
      const fid = state.failover;
      items = (await api('GET', `/v1/failovers/${fid}/snapshots?limit=100`)).data.items;
      if (state.selected !== id || state.failover !== fid) return;
    }
    showFailovers(fos, items);
    showFailoverTest(tests.data.items.find((t) => t.datacenter_id === id) || null);
  }

  async function failoverAction(action) {
    const id = state.selected;
    try {
      if (action === 'test') {
        message(`rehearsing the failover of ${id}…`);
        const { data } = await api('POST', '/v1/failover-tests', { datacenter_id: id });
        message('the test VMs come up at the replica sites; clean them up when you have seen them');
        showFailoverTest(data);
      } else if (action === 'cleanup') {
        const { data } = await api('POST', `/v1/failover-tests/${state.foTest.id}/cleanup`);
        message('the test VMs are powered off and deleted');
        showFailoverTest(data);
      } else {
        const { data } = await api('POST', `/v1/failovers/${state.failover}/failback`);
        message(`failing back to ${id}: only what changed since its copy travels`);
        showFailovers(state.failovers.map((f) => (f.id === data.id ? data : f)), null);
      }
    } catch (e) {
      message(e.status === 403 ? 'your token may not do this (operator role needed)' : e.message, true);
    }
  }

  async function select(id) {
    state.selected = id;
    state.evac = null;
    state.failover = null;
    message('');
    showPanel();
    drawDatacenters();
    try {
      await Promise.all([loadPanelLists(id), loadEvacuation(id), loadFailovers(id)]);
    } catch (e) {
      message(e.message, true);
    }
  }

  async function setStatus(status) {
    const id = state.selected;
    message(`${status === 'draining' ? 'draining' : 'activating'} ${id}…`);
    try {
      // Read the ETag first: if someone changed the datacenter meanwhile, we are told (412).
      const { etag } = await api('GET', `/v1/datacenters/${encodeURIComponent(id)}`);
      const { data } = await api('PUT', `/v1/datacenters/${encodeURIComponent(id)}/status`,
        { status }, { 'If-Match': etag });
      state.dcs.set(id, data);
      message(status === 'draining'
        ? 'draining: no new snapshots will be placed here'
        : 'active again');
      showPanel();
      drawDatacenters();
      refresh();
    } catch (e) {
      message(e.status === 403 ? 'your token may not do this (operator role needed)' : e.message, true);
    }
  }

  /* ---- a snapshot's versions: diff and compose -------------------------------- */

  function snapMessage(text, error) {
    $('snap-message').textContent = text;
    $('snap-message').className = error ? 'error' : '';
  }

  function fmt(v) {
    return v === undefined ? '–' : JSON.stringify(v);
  }

  async function openSnapshot(id) {
    state.snapshot = id;
    state.diff = null;
    $('snap-panel').hidden = false;
    $('snap-panel').dataset.id = id;
    $('snap-title').textContent = `snapshot ${id}`;
    $('diff-config').tBodies[0].replaceChildren();
    state.filesKey = null;
    clearFiles('');
    $('compose-confirm').hidden = true;
    snapMessage('');
    try {
      const versions = await all(`/v1/snapshots/${encodeURIComponent(id)}/versions`);
      const options = (sel) => sel.replaceChildren(...versions.map((v) => {
        const o = document.createElement('option');
        o.value = v.version;
        o.textContent = `v${v.version}`;
        return o;
      }));
      options($('diff-from'));
      options($('diff-to'));
      if (versions.length < 2) {
        snapMessage('fewer than two registered versions: nothing to compare');
        return;
      }
      $('diff-from').value = versions[versions.length - 2].version;
      $('diff-to').value = versions[versions.length - 1].version;
      await runDiff();
    } catch (e) {
      snapMessage(e.message, true);
    }
  }

  function drawDisk(disk) {
    const bar = $('diff-disk-bar');
    bar.querySelectorAll('.extent').forEach((n) => n.remove());
    $('take-extents').disabled = true;
    if (!disk || disk.state !== 'succeeded') {
      $('diff-disk-text').textContent = !disk ? 'the snapshot is active nowhere: no disk diff'
        : disk.state === 'failed' ? `the agent could not compare the disks: ${disk.error}`
          : `the agent at ${disk.datacenter_id} is comparing the disks (${disk.state})…`;
      return;
    }
    for (const x of disk.extents) {
      // At least a pixel's width, so that one changed block shows.
      const w = Math.max(1000 * x.length / disk.virtual_size, 1.5);
      bar.appendChild(el('rect', { class: 'extent', x: 1000 * x.offset / disk.virtual_size, y: 0,
        width: w, height: 24 }, [title(`${bytes(x.offset)} +${bytes(x.length)}`)]));
    }
    $('diff-disk-text').textContent = `${disk.extents.length} changed regions, ` +
      `${bytes(disk.changed_bytes)} of ${bytes(disk.virtual_size)}`;
    $('take-extents').disabled = disk.extents.length === 0;
  }

  async function runDiff() {
    const id = state.snapshot;
    const from = $('diff-from').value;
    const to = $('diff-to').value;
    const { data } = await api('GET',
      `/v1/snapshots/${encodeURIComponent(id)}/diff?from=${from}&to=${to}`);
    if (state.snapshot !== id) return;
    state.diff = data;
    $('diff-config').tBodies[0].replaceChildren(...data.config.changes.map((c) => {
      const tr = row(['', c.path, fmt(c.old), fmt(c.new)]);
      const box = document.createElement('input');
      box.type = 'checkbox';
      box.dataset.path = c.path;
      tr.cells[0].appendChild(box);
      tr.cells[2].className = 'old';
      tr.cells[3].className = 'new';
      return tr;
    }));
    if (!data.config.changes.length) {
      $('diff-config').tBodies[0].appendChild(row(['', 'no key differs', '', '']));
    }
    drawDisk(data.disk);
    // The disks' diff comes from the agent: ask again until it has answered.
    if (data.disk && (data.disk.state === 'queued' || data.disk.state === 'running')) {
      setTimeout(() => { if (state.diff === data) runDiff().catch(() => {}); }, POLL_MS);
    }
  }

  /* The guest files: a job of the agent (libguestfs), asked on demand and followed. */
  function clearFiles(text) {
    $('diff-files').tBodies[0].replaceChildren();
    $('file-diff').hidden = true;
    $('files-text').textContent = text || '';
  }

  function fileSize(f) {
    if (f.change === 'added') return f.new_size === undefined ? '' : bytes(f.new_size);
    if (f.change === 'removed') return f.old_size === undefined ? '' : bytes(f.old_size);
    const parts = [];
    if (f.content_changed && f.old_size !== undefined) {
      parts.push(`${bytes(f.old_size)} → ${bytes(f.new_size)}`);
    }
    if (f.old_mode) parts.push(`mode ${f.old_mode} → ${f.new_mode}`);
    if (f.old_owner) parts.push(`owner ${f.old_owner} → ${f.new_owner}`);
    return parts.join(', ');
  }

  function drawFiles(result) {
    const several = result.filesystems.length > 1;
    const rows = result.files.map((f) => {
      const item = several ? `${f.filesystem}:${f.path}` : f.path;
      const tr = row(['', item, f.type === 'file' ? f.change : `${f.change} (${f.type})`,
        fileSize(f)]);
      tr.dataset.path = f.path;
      // Ticked: the new version takes this file as the other version has it
      // (or goes without it, where the other version has none).
      const box = document.createElement('input');
      box.type = 'checkbox';
      box.dataset.item = item;
      box.addEventListener('click', (evt) => evt.stopPropagation());
      tr.cells[0].appendChild(box);
      tr.addEventListener('click', () => {
        $('diff-files').querySelectorAll('tr.selected').forEach((n) => n.classList.remove('selected'));
        tr.classList.add('selected');
        $('file-diff').textContent = f.diff || `no text diff: ${f.diff_skipped ||
          (f.content_changed === false ? 'the content is the same' : 'not a regular file')}`;
        $('file-diff').hidden = false;
      });
      return tr;
    });
    $('diff-files').tBodies[0].replaceChildren(...rows);
    $('files-text').textContent = `${result.added} added, ${result.removed} removed, ` +
      `${result.changed} changed` + (result.truncated ? ' (the list is cut at 500)' : '') +
      (rows.length ? '; click a file for its diff' : '');
  }

  async function followFiles(href, id, key) {
    if (state.snapshot !== id || state.filesKey !== key) return;
    let job;
    try {
      ({ data: job } = await api('GET', href));
    } catch (e) {
      // 501: libguestfs cannot run at that agent; the problem says what is missing.
      if (state.snapshot === id && state.filesKey === key) clearFiles(e.message);
      return;
    }
    if (state.snapshot !== id || state.filesKey !== key) return;
    if (job.state === 'succeeded') {
      drawFiles(job.result);
    } else if (job.state === 'failed') {
      clearFiles(`the agent could not compare the guest files: ${job.error}`);
    } else {
      clearFiles(`the agent at ${job.datacenter_id} is comparing the guest files: ` +
        `${job.phase || job.state} (${job.progress} %)…`);
      setTimeout(() => followFiles(href, id, key).catch(() => {}), POLL_MS / 3);
    }
  }

  async function runFiles() {
    const id = state.snapshot;
    const from = $('diff-from').value;
    const to = $('diff-to').value;
    const key = `${id}/${from}/${to}`;
    state.filesKey = key;
    clearFiles('asking the agent…');
    const { data } = await api('GET',
      `/v1/snapshots/${encodeURIComponent(id)}/diff?from=${from}&to=${to}&files=true`);
    if (!data.files) {
      clearFiles('the snapshot is active nowhere: no file diff');
      return;
    }
    await followFiles(data.files.href, id, key);
  }

  /* What the new version takes from `to`, and the sentence that says so. */
  function chosen() {
    const d = state.diff;
    const config = [...document.querySelectorAll('#diff-config input:checked')]
      .map((b) => b.dataset.path);
    const whole = $('take-disk').checked;
    const extents = !whole && $('take-extents').checked ? d.disk.extents : [];
    const files = [...document.querySelectorAll('#diff-files input:checked')]
      .map((b) => b.dataset.item);
    const items = [];
    if (config.length) items.push(`the configuration keys ${config.join(', ')}`);
    if (whole) items.push('the whole disk');
    else if (extents.length) {
      items.push(`${extents.length} disk regions (${bytes(extents.reduce((a, x) => a + x.length, 0))})`);
    }
    if (files.length) items.push(`the guest files ${files.join(', ')}`);
    const listed = items.length > 1
      ? `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}` : items[0];
    return {
      body: { base: d.from, from: d.to, config, disk_extents: extents, whole_disk: whole, files },
      summary: items.length
        ? `A new version of ${d.snapshot_id}: v${d.from} with ${listed} taken from ` +
          `v${d.to}. Nothing else changes; v${d.from} and v${d.to} stay as they are.`
        : null,
    };
  }

  async function compose() {
    const { body } = chosen();
    $('compose-confirm').hidden = true;
    snapMessage('asking for the new version…');
    try {
      const { data } = await api('POST',
        `/v1/snapshots/${encodeURIComponent(state.snapshot)}/versions`, body);
      snapMessage(`composition ${data.id} queued at ${data.datacenter_id}: its agent writes ` +
        'and registers the new version');
    } catch (e) {
      snapMessage(e.status === 403 ? 'your token may not do this (operator role needed)'
        : e.message, true);
    }
  }

  /* ---- the loop ------------------------------------------------------------- */

  async function refresh() {
    try {
      const [dcs, transfers, stats] = await Promise.all([
        all('/v1/datacenters'),
        all('/v1/transfers?state=queued,running'),
        api('GET', '/v1/stats'),
      ]);
      state.dcs = new Map(dcs.map((dc) => [dc.id, dc]));
      state.transfers = transfers;
      drawDatacenters();
      drawTransfers();
      showStats(stats.data);
      if (state.selected) {
        showPanel();
        loadPanelLists(state.selected).catch(() => {});
        loadEvacuation(state.selected).catch(() => {});
        loadFailovers(state.selected).catch(() => {});
      }
      $('conn').textContent = `live · ${new Date().toLocaleTimeString()}`;
      $('conn').className = 'ok';
      document.body.dataset.loaded = 'true';
    } catch (e) {
      $('conn').textContent = `cannot reach the API: ${e.message}`;
      $('conn').className = 'bad';
    }
  }

  function askForToken(why) {
    clearInterval(state.timer);
    state.timer = null;
    $('login-error').textContent = why || '';
    if (!$('login').open) $('login').showModal();
  }

  async function start() {
    try {
      state.me = (await api('GET', '/v1/me')).data;
    } catch (e) {
      if (e.status !== 401) askForToken(e.message);
      return;
    }
    $('login').close();
    $('whoami').textContent = `${state.me.name} (${state.me.role})`;
    $('token-forget').hidden = false;
    window.dispatchEvent(new Event('homing-signed-in')); // quality.js's page may load now
    await refresh();
    clearInterval(state.timer);
    state.timer = setInterval(refresh, POLL_MS);
  }

  async function main() {
    try {
      state.world = await (await fetch('/dashboard/countries-110m.json')).json();
    } catch (e) {
      state.world = null; // the map still shows the datacenters, without outlines
    }
    setupMap();
    window.addEventListener('resize', () => { setupMap(); drawDatacenters(); drawTransfers(); });
    $('login-form').addEventListener('submit', (evt) => {
      evt.preventDefault();
      state.token = $('token-input').value.trim();
      localStorage.setItem('homing.token', state.token);
      start();
    });
    $('token-forget').addEventListener('click', () => {
      localStorage.removeItem('homing.token');
      state.token = null;
      askForToken('');
    });
    $('dc-close').addEventListener('click', () => {
      state.selected = null;
      $('dc-panel').hidden = true;
      drawDatacenters();
    });
    $('dc-snapshots').tBodies[0].addEventListener('click', (evt) => {
      const tr = evt.target.closest('tr');
      if (tr && tr.cells.length) openSnapshot(tr.cells[0].textContent);
    });
    $('snap-close').addEventListener('click', () => {
      state.snapshot = null;
      state.diff = null;
      $('snap-panel').hidden = true;
    });
    $('diff-run').addEventListener('click', () => {
      state.filesKey = null;
      clearFiles('');
      runDiff().catch((e) => snapMessage(e.message, true));
    });
    $('files-run').addEventListener('click', () => runFiles().catch((e) => clearFiles(e.message)));
    $('compose').addEventListener('click', () => {
      if (!state.diff) return;
      const { summary } = chosen();
      if (!summary) {
        snapMessage('choose what to take first: keys, the changed disk regions, the whole disk or ' +
          'guest files', true);
        return;
      }
      $('compose-summary').textContent = summary;
      $('compose-confirm').hidden = false;
    });
    $('compose-yes').addEventListener('click', compose);
    $('compose-no').addEventListener('click', () => { $('compose-confirm').hidden = true; });
    $('drain').addEventListener('click', () => setStatus('draining'));
    $('activate').addEventListener('click', () => setStatus('active'));
    $('evac-plan').addEventListener('click', () => evacuate('plan'));
    $('evac-run').addEventListener('click', () => evacuate('execute'));
    $('evac-cancel').addEventListener('click', () => evacuate('cancel'));
    $('fotest-start').addEventListener('click', () => failoverAction('test'));
    $('fotest-cleanup').addEventListener('click', () => failoverAction('cleanup'));
    $('fo-failback').addEventListener('click', () => failoverAction('failback'));
    $('fo-list').tBodies[0].addEventListener('click', (evt) => {
      const tr = evt.target.closest('tr');
      if (!tr) return;
      state.failover = Number(tr.dataset.id);
      loadFailovers(state.selected).catch((e) => message(e.message, true));
    });
    if (state.token) start();
    else askForToken('');
  }

  // What the other pages of the dashboard (quality.js) call: the same token, the same errors.
  window.homing = { api, all, bytes };
  main();
})();
