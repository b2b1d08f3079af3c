/* spendwatch report: renders the datasets embedded in #spendwatch-data (aggregated by the
 * warehouse) with Plotly, embedded above. Rules of this file:
 *  - every string from the data reaches the DOM as text (textContent, text nodes, attributes
 *    set as properties), never as markup; strings handed to Plotly go through `pt()`, which
 *    escapes them for Plotly's pseudo-HTML, so a feature named <img src=x onerror=...> shows
 *    as text;
 *  - no network request: nothing is fetched, no image, font or script is loaded;
 *  - no pricing logic beyond "tokens × per-token price of the row valid at the date": the
 *    prices, cache and long-context figures come from the warehouse.
 */
'use strict';
(function () {
  const D = JSON.parse(document.getElementById('spendwatch-data').textContent);
  const META = D.meta;
  const HOUR = 3600 * 1000;
  const DAY = 24 * HOUR;

  // ------------------------------------------------------------------ helpers
  function records(cols) {
    const keys = Object.keys(cols || {});
    const n = keys.length ? cols[keys[0]].length : 0;
    const out = new Array(n);
    for (let i = 0; i < n; i++) {
      const o = {};
      for (const k of keys) o[k] = cols[k][i];
      out[i] = o;
    }
    return out;
  }
  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v == null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = String(v);
      else if (k === 'title') e.title = String(v);
      else if (k === 'dataset') {
        for (const [dk, dv] of Object.entries(v)) if (dv != null) e.dataset[dk] = String(dv);
      }
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c == null || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
  const $ = (id) => document.getElementById(id);
  // Plotly renders labels as pseudo-HTML: escape &, < and > so names show as typed.
  const pt = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  function parseUTC(s) {
    return Date.UTC(+s.slice(0, 4), +s.slice(5, 7) - 1, +s.slice(8, 10), +(s.slice(11, 13) || 0),
      +(s.slice(14, 16) || 0));
  }
  const iso = (ms) => new Date(ms).toISOString().slice(0, 16).replace('T', ' ');
  const isoDay = (ms) => new Date(ms).toISOString().slice(0, 10);
  const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  function nice(ms) {
    const d = new Date(ms);
    return `${MONTHS[d.getUTCMonth()]} ${d.getUTCDate()} ${String(d.getUTCHours()).padStart(2, '0')}:00`;
  }
  const monthName = (ms) => {
    const d = new Date(ms);
    return `${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()}`;
  };
  const int = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
  const dec1 = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });
  function usd(v, digits) {
    if (v == null || !isFinite(v)) return '—';
    const a = Math.abs(v);
    const d = digits != null ? digits : a === 0 ? 2 : a < 0.01 ? 6 : a < 1 ? 4 : 2;
    return (v < 0 ? '−$' : '$') + a.toLocaleString('en-US', { minimumFractionDigits: Math.min(d, 2), maximumFractionDigits: d });
  }
  const pct = (v, digits = 1) => (v == null || !isFinite(v) ? '—' : `${(v * 100).toFixed(digits)} %`);
  const num = (v) => (v == null || !isFinite(v) ? '—' : int.format(v));
  const sum = (rows, k) => rows.reduce((a, r) => a + (r[k] || 0), 0);
  const ratio = (a, b) => (b ? a / b : null);
  function groupBy(rows, keyFn) {
    const m = new Map();
    for (const r of rows) {
      const k = keyFn(r);
      if (!m.has(k)) m.set(k, []);
      m.get(k).push(r);
    }
    return m;
  }

  // ------------------------------------------------------------------ data
  const asOf = parseUTC(META.as_of);
  const firstHour = parseUTC(META.first_hour);
  const hourlyStart = parseUTC(META.hourly_start);
  const prevMonthStart = parseUTC(META.prev_month_start);
  const monthStart = parseUTC(META.month_start);
  const FEATURES = D.features;
  const MODELS = D.models.map((m) => m.model);
  const MODEL_PROVIDERS = D.models.map((m) => m.provider);
  const HOURLY = records(D.hourly);
  const DAILY = records(D.daily);
  const BAND = records(D.band);
  const ANOMALY_HOURS = records(D.anomaly_hours);
  const FM = records(D.fm);
  const DRIVERS = records(D.drivers);
  const KPIS = records(D.kpis);
  const BUDGETS = records(D.budgets);
  const INCIDENTS = records(D.incidents);
  const COUNTS = records(D.incident_counts);
  const DELIVERIES = new Map(records(D.deliveries).map((r) => [r.incident_key, r.deliveries]));
  const PRICES = records(D.prices);
  const REJECTED = records(D.quality.rejected);
  const LOAD = records(D.quality.load);
  const CHECKS = records(D.quality.checks);
  const USAGE_DETAIL = records(D.quality.usage_detail || {});
  const PALETTE = ['#4c6ef5', '#f76707', '#2f9e44', '#e03131', '#7048e8', '#1098ad', '#d6336c',
    '#f59f00', '#5c940d', '#495057'];
  const MODEL_PALETTE = ['#364fc7', '#e8590c', '#099268', '#c2255c', '#5f3dc4', '#0b7285',
    '#a61e4d', '#e67700'];
  const OTHER_COLOR = '#adb5bd';
  const SEVERITY_COLOR = { critical: '#d62728', warning: '#f0a202' };
  const rangeLabel = (h) => (h === 24 ? 'last 24 h' : `last ${h / 24} days`);

  const state = {
    r: Math.max(0, META.ranges.indexOf(168)),
    env: META.environment || '*',
    feature: '*',
    view: 'feature',
  };
  if (META.ranges.indexOf(168) < 0) state.r = META.ranges.length - 1;
  const rangeHours = () => META.ranges[state.r];
  const rangeStart = () => asOf - rangeHours() * HOUR;
  const envOk = (e) => state.env === '*' || e === state.env;
  const featOk = (f) => state.feature === '*' || f === state.feature;
  function scopeRows(rows) {
    const ae = state.env === '*';
    const af = state.feature === '*';
    return rows.filter((r) => r.all_env === ae && r.all_feat === af
      && (ae || r.environment === state.env) && (af || r.feature === state.feature));
  }
  const fmRows = () => FM.filter((r) => r.r === state.r && envOk(r.environment) && featOk(r.feature));

  // ------------------------------------------------------------------ plotly
  const CONFIG = {
    displaylogo: false, responsive: true,
    modeBarButtonsToRemove: ['select2d', 'lasso2d', 'autoScale2d', 'toggleSpikelines'],
  };
  function layout(extra) {
    return Object.assign({
      margin: { l: 60, r: 16, t: 8, b: 40 },
      font: { family: 'system-ui, -apple-system, Segoe UI, Roboto, sans-serif', size: 12, color: '#1d2330' },
      paper_bgcolor: 'rgba(0,0,0,0)', plot_bgcolor: 'rgba(0,0,0,0)',
      legend: { orientation: 'h', y: -0.18, x: 0 },
      hoverlabel: { namelength: -1 },
      xaxis: { gridcolor: '#eef0f3' },
      yaxis: { gridcolor: '#eef0f3', rangemode: 'tozero' },
    }, extra || {});
  }
  function draw(id, traces, lay, emptyText) {
    const node = $(id);
    if (!traces.length) {
      if (node.data) Plotly.purge(node);
      clear(node);
      node.classList.add('empty');
      node.dataset.empty = 'true';
      node.append(el('span', { text: emptyText || 'Nothing to show for these filters' }));
      return;
    }
    if (node.dataset.empty) {
      clear(node);
      node.classList.remove('empty');
      delete node.dataset.empty;
    }
    Plotly.react(node, traces, layout(lay), CONFIG);
  }

  // labels and colours of the stacked series
  function seriesKey(row) { return state.view === 'feature' ? row.f : row.m; }
  function seriesLabel(k) {
    if (state.view === 'feature') return k < 0 ? 'other features' : FEATURES[k];
    return k < 0 ? 'other models' : MODELS[k];
  }
  function seriesColor(k) {
    if (k < 0) return OTHER_COLOR;
    return state.view === 'feature' ? PALETTE[k % PALETTE.length] : MODEL_PALETTE[k % MODEL_PALETTE.length];
  }
  function seriesRowOk(row) {
    if (!envOk(row.e)) return false;
    if (state.feature === '*') return true;
    return row.f >= 0 && FEATURES[row.f] === state.feature;
  }
  function stacked(rows, toX) {
    const byKey = groupBy(rows, seriesKey);
    const keys = [...byKey.keys()].sort((a, b) => sum(byKey.get(b), 'cost') - sum(byKey.get(a), 'cost'));
    return keys.map((k) => {
      const byX = new Map();
      for (const r of byKey.get(k)) byX.set(r.t, (byX.get(r.t) || 0) + (r.cost || 0));
      const ts = [...byX.keys()].sort((a, b) => a - b);
      return {
        type: 'bar', name: pt(seriesLabel(k)), x: ts.map(toX), y: ts.map((t) => byX.get(t)),
        marker: { color: seriesColor(k) },
        hovertemplate: '%{fullData.name}: $%{y:,.2f}<extra></extra>',
      };
    });
  }

  // ------------------------------------------------------------------ incidents in scope
  function incidentsInScope(since) {
    return INCIDENTS.filter((i) => envOk(i.environment)
      && (state.feature === '*' || i.feature === state.feature)
      && parseUTC(i.last_hour) >= since);
  }
  function incidentWhere(i) {
    const parts = [];
    if (i.feature) parts.push(i.feature);
    if (i.team_id) parts.push(`team ${i.team_id}`);
    if (i.model) parts.push(i.model);
    if (i.environment) parts.push(i.environment);
    return parts.length ? parts.join(' / ') : 'all traffic';
  }

  // ------------------------------------------------------------------ header, filters
  function renderHeader() {
    const stale = (parseUTC(META.generated_at) - asOf) / HOUR;
    $('asof').textContent = `Data up to ${nice(asOf)} UTC · generated ${META.generated_at} UTC`
      + (META.environment ? ` · environment ${META.environment} only` : '');
    const banner = clear($('banner'));
    if (stale > 3) {
      banner.append(el('p', { class: 'banner warn', role: 'status' },
        `The latest data is from ${nice(asOf - HOUR)} UTC, ${dec1.format(stale)} hours before this report was generated: is the hourly pipeline running, and are applications still writing call logs?`));
    }
    const footer = clear($('footer'));
    footer.append(
      `spendwatch ${META.version} · every figure is aggregated in the warehouse `,
      el('code', { text: META.warehouse }),
      ` (marts.fct_llm_calls, marts.agg_hourly_feature_cost, marts.anomalies, raw.*, ops.*); prices from staging.stg_model_prices. Times are UTC. Hourly detail covers ${META.days} days from ${nice(hourlyStart)}; history in the warehouse starts ${nice(firstHour)}.`);
  }

  function fillSelect(select, options, value) {
    clear(select);
    for (const [v, label] of options) select.append(el('option', { value: v, text: label }));
    select.value = value;
  }
  function renderFilters() {
    fillSelect($('f-range'), META.ranges.map((h, i) => [String(i), rangeLabel(h)]), String(state.r));
    const envs = META.environment ? [[META.environment, META.environment]]
      : [['*', 'All environments'], ...META.environments.map((e) => [e, e])];
    fillSelect($('f-env'), envs, state.env);
    $('f-env').disabled = !!META.environment;
    fillSelect($('f-feature'), [['*', 'All features'], ...FEATURES.map((f) => [f, f])], state.feature);
    const allFeatures = new Set(FM.map((r) => r.feature));
    $('filter-note').textContent = allFeatures.size > FEATURES.length
      ? `${FEATURES.length} of ${allFeatures.size} features by spend listed; the rest are summed as “other features”` : '';
    $('f-range').addEventListener('change', (e) => { state.r = +e.target.value; renderAll(); });
    $('f-env').addEventListener('change', (e) => { state.env = e.target.value; renderAll(); });
    $('f-feature').addEventListener('change', (e) => {
      state.feature = e.target.value;
      if (state.feature !== '*') $('band-feature').value = state.feature;
      renderAll();
    });
    for (const b of document.querySelectorAll('#seg-view button')) {
      b.addEventListener('click', () => { state.view = b.dataset.view; renderSpend(); });
    }
  }

  // ------------------------------------------------------------------ KPIs
  function delta(cur, prev, opts) {
    const o = opts || {};
    if (o.noPrev) return el('span', { class: 'delta', text: 'no earlier data' });
    if (cur == null || prev == null) return el('span', { class: 'delta', text: '—' });
    let text;
    let change = 0;
    if (o.absolute) {
      change = cur - prev;
      text = change === 0 ? 'no change' : `${change > 0 ? '+' : '−'}${num(Math.abs(change))}`;
    } else if (prev === 0) {
      text = cur === 0 ? 'no change' : 'new';
      change = cur;
    } else {
      change = (cur - prev) / Math.abs(prev);
      text = Math.abs(change) < 0.0005 ? 'no change' : `${change > 0 ? '▲ +' : '▼ −'}${(Math.abs(change) * 100).toFixed(1)} %`;
    }
    let cls = 'delta';
    if (change !== 0 && o.goodWhen) cls += (change > 0) === (o.goodWhen === 'up') ? ' good' : ' bad';
    return el('span', { class: cls, text });
  }
  function kpi(label, value, deltaNode, sub, attrs) {
    return el('div', Object.assign({ class: 'kpi' }, attrs || {}),
      el('div', { class: 'label', text: label }),
      el('div', { class: 'value', text: value }),
      el('div', { class: 'sub' }, deltaNode, sub ? el('span', { text: sub }) : null));
  }
  function renderKpis() {
    const k = scopeRows(KPIS)[0] || {};
    const b = scopeRows(BUDGETS)[0];
    const c = scopeRows(COUNTS)[0] || { open_now: 0, open_24h_ago: 0, new_24h: 0 };
    const no48 = firstHour > asOf - 48 * HOUR;
    const elapsed = asOf - monthStart;
    const noPrevMonth = firstHour > prevMonthStart;
    const box = clear($('kpis'));
    box.append(
      kpi('Spend · last 24 h', usd(k.spend_24h, 2), delta(k.spend_24h, k.spend_prev_24h, { goodWhen: 'down', noPrev: no48 }), 'vs the 24 h before', { id: 'kpi-spend-24h', dataset: { value: k.spend_24h } }),
      kpi('Spend · month to date', usd(k.spend_mtd, 2), delta(k.spend_mtd, k.spend_prev_mtd, { goodWhen: 'down', noPrev: noPrevMonth }),
        `vs the same ${dec1.format(elapsed / DAY)} days of ${monthName(prevMonthStart)}`, { id: 'kpi-spend-mtd', dataset: { value: k.spend_mtd } }),
      (() => {
        const proj = k.projected_month_end;
        let node;
        if (b && b.budget_usd) {
          const share = proj / b.budget_usd;
          node = el('span', { class: `delta ${share >= 1 ? 'bad' : share >= 0.8 ? 'warn' : 'good'}`, text: `${pct(share, 0)} of budget` });
        } else node = el('span', { class: 'delta', text: 'no budget set' });
        const sub = b && b.budget_usd ? `budget ${usd(b.budget_usd, 0)} · ` : '';
        return kpi('Projected month-end', usd(proj, 2), node,
          `${sub}${noPrevMonth ? 'linear over the hours elapsed' : `${monthName(prevMonthStart)}: ${usd(k.spend_prev_month, 2)}`}`,
          { id: 'kpi-projected', dataset: { value: proj, budget: b ? b.budget_usd : '' } });
      })(),
      kpi('Calls · last 24 h', num(k.calls_24h), delta(k.calls_24h, k.calls_prev_24h, { noPrev: no48 }), 'vs the 24 h before', { id: 'kpi-calls' }),
      kpi('Cost per call · 24 h', usd(k.cost_per_call_24h), delta(k.cost_per_call_24h, k.cost_per_call_prev_24h, { goodWhen: 'down', noPrev: no48 }), 'priced calls', { id: 'kpi-cost-per-call' }),
      kpi('Cache savings · 24 h', usd(k.savings_24h, 2), delta(k.savings_24h, k.savings_prev_24h, { goodWhen: 'up', noPrev: no48 }), 'cache reads vs full input price', { id: 'kpi-cache-savings' }),
      kpi('Unpriced calls · 24 h', num(k.unpriced_24h), delta(k.unpriced_24h, k.unpriced_prev_24h, { absolute: true, goodWhen: 'down', noPrev: no48 }), 'no price row: not in the spend', { id: 'kpi-unpriced' }),
      kpi('Open incidents', num(c.open_now), delta(c.open_now, c.open_24h_ago, { absolute: true, goodWhen: 'down', noPrev: no48 }), `vs 24 h ago · ${num(c.new_24h)} new in 24 h`, { id: 'kpi-open-incidents', dataset: { value: c.open_now } }),
    );
    $('kpi-note').textContent = 'KPIs: last 24 h and this month, whatever the time range; environment and feature filters apply.'
      + (firstHour > monthStart ? ` History starts ${nice(firstHour)}: month to date covers that.` : '');
  }

  // ------------------------------------------------------------------ spend over time
  // budget incidents last for the month: a marker, not a shaded month
  function incidentMarks(list, yref) {
    const shapes = list.filter((i) => i.detector !== 'budget_burn').map((i) => ({
      type: 'rect', xref: 'x', yref: 'paper', y0: 0, y1: 1, layer: 'below', line: { width: 0 },
      x0: iso(parseUTC(i.first_hour)), x1: iso(parseUTC(i.last_hour) + HOUR),
      fillcolor: SEVERITY_COLOR[i.severity] || '#999', opacity: 0.13,
    }));
    const marks = list.length ? [{
      type: 'scatter', mode: 'markers', name: 'incidents', yaxis: yref, showlegend: true,
      x: list.map((i) => iso(Math.max(parseUTC(i.first_hour), rangeStart()))), y: list.map(() => 1),
      marker: { symbol: 'triangle-down', size: 12, color: list.map((i) => SEVERITY_COLOR[i.severity] || '#999') },
      text: list.map((i) => pt(`${i.severity} ${i.detector}: ${i.message || ''}`)),
      hovertemplate: '%{text}<extra></extra>',
    }] : [];
    return { shapes, marks };
  }
  function renderSpend() {
    for (const b of document.querySelectorAll('#seg-view button')) b.setAttribute('aria-pressed', String(b.dataset.view === state.view));
    const windowHours = META.days * 24;
    const from = windowHours - rangeHours();
    const hourly = HOURLY.filter((r) => r.t >= from && seriesRowOk(r));
    const traces = stacked(hourly, (t) => iso(hourlyStart + t * HOUR));
    const inc = incidentsInScope(rangeStart());
    const { shapes, marks } = incidentMarks(inc, 'y2');
    $('hourly-caption').textContent = `· ${rangeLabel(rangeHours())} · ${num(sum(hourly, 'calls'))} calls · ${usd(sum(hourly, 'cost'), 2)}`;
    draw('chart-hourly', traces.length ? traces.concat(marks) : [], {
      barmode: 'stack', bargap: 0.08, hovermode: 'x unified', shapes,
      xaxis: { type: 'date', gridcolor: '#eef0f3', range: [iso(rangeStart()), iso(asOf)] },
      yaxis: { tickprefix: '$', gridcolor: '#eef0f3', rangemode: 'tozero' },
      yaxis2: { overlaying: 'y', range: [0, 1.06], visible: false, fixedrange: true },
    }, 'No calls in this range for these filters');

    const daily = DAILY.filter(seriesRowOk);
    const dtraces = stacked(daily, (t) => isoDay(prevMonthStart + t * DAY));
    const b = scopeRows(BUDGETS)[0];
    const dshapes = [{ type: 'line', xref: 'x', yref: 'paper', x0: isoDay(monthStart - DAY / 2), x1: isoDay(monthStart - DAY / 2), y0: 0, y1: 1, line: { color: '#868e96', width: 1, dash: 'dot' } }];
    const annotations = [{ x: isoDay(monthStart - DAY / 2), y: 1, yref: 'paper', text: pt(monthName(monthStart)), showarrow: false, xanchor: 'left', font: { color: '#868e96' } }];
    if (b && b.budget_usd) {
      const days = new Date(Date.UTC(new Date(monthStart).getUTCFullYear(), new Date(monthStart).getUTCMonth() + 1, 0)).getUTCDate();
      const pace = b.budget_usd / days;
      dshapes.push({ type: 'line', xref: 'x', yref: 'y', x0: isoDay(monthStart - DAY / 2), x1: isoDay(asOf + DAY / 2), y0: pace, y1: pace, line: { color: '#c92a2a', width: 1.5, dash: 'dash' } });
      annotations.push({ x: isoDay(monthStart), y: pace, text: pt(`budget pace ${usd(pace, 0)}/day`), showarrow: false, yanchor: 'bottom', xanchor: 'left', bgcolor: 'rgba(255,255,255,0.85)', font: { color: '#c92a2a' } });
    }
    $('daily-caption').textContent = `· ${monthName(prevMonthStart)} and ${monthName(monthStart)} to date`
      + (firstHour > prevMonthStart ? ` (history starts ${nice(firstHour)})` : '');
    const dayOf = (text) => isoDay(parseUTC(text.slice(0, 10)));
    const dayIncidents = incidentsInScope(prevMonthStart);
    const dayMarks = dayIncidents.length ? [{
      type: 'scatter', mode: 'markers', name: 'incidents', yaxis: 'y2',
      x: dayIncidents.map((i) => dayOf(i.first_hour)), y: dayIncidents.map(() => 1),
      marker: { symbol: 'triangle-down', size: 11, color: dayIncidents.map((i) => SEVERITY_COLOR[i.severity] || '#999') },
      text: dayIncidents.map((i) => pt(`${i.severity} ${i.detector}: ${i.message || ''}`)),
      hovertemplate: '%{text}<extra></extra>',
    }] : [];
    const dailyFrom = Math.max(prevMonthStart, Date.UTC(new Date(firstHour).getUTCFullYear(), new Date(firstHour).getUTCMonth(), new Date(firstHour).getUTCDate()));
    draw('chart-daily', dtraces.length ? dtraces.concat(dayMarks) : [], {
      barmode: 'stack', bargap: 0.15, hovermode: 'x unified', shapes: dshapes, annotations,
      yaxis2: { overlaying: 'y', range: [0, 1.06], visible: false, fixedrange: true },
      xaxis: { type: 'date', gridcolor: '#eef0f3', range: [isoDay(dailyFrom - DAY / 2), isoDay(asOf + DAY / 2)] },
      yaxis: { tickprefix: '$', gridcolor: '#eef0f3', rangemode: 'tozero' },
    }, 'No calls this month or last for these filters');
    renderBand();
  }

  const BAND_METRICS = {
    cost_usd: { label: 'spend per hour', fmt: (v) => usd(v), prefix: '$' },
    calls: { label: 'calls per hour', fmt: num, prefix: '' },
    cost_per_call_usd: { label: 'cost per call', fmt: (v) => usd(v), prefix: '$' },
    cache_hit_rate: { label: 'share of calls reading the cache', fmt: (v) => pct(v), prefix: '', rate: true },
  };
  const KIND_TEXT = {
    hour_of_week: 'the same hour of the week over the previous weeks',
    hour_of_day: 'the same hour of day over the previous days',
    trailing: 'the trailing hours (shown; it does not raise volume or cost alerts)',
    warming_up: 'too little history yet (warming up: no band, no alerts)',
  };
  function bandEnv() {
    if (state.env !== '*') return state.env;
    return META.environments.includes('production') ? 'production' : META.environments[0];
  }
  function renderBand() {
    const fIdx = FEATURES.indexOf($('band-feature').value);
    const metric = $('band-metric').value;
    const m = BAND_METRICS[metric];
    const env = bandEnv();
    const from = META.days * 24 - rangeHours();
    const rows = BAND.filter((r) => r.f === fIdx && r.e === env && r.t >= from).sort((a, b) => a.t - b.t);
    const x = rows.map((r) => iso(hourlyStart + r.t * HOUR));
    const b = rows.map((r) => r[`${metric}_baseline`]);
    const s = rows.map((r) => r[`${metric}_stddev`]);
    const lo = b.map((v, i) => (v == null || s[i] == null ? null : Math.max(0, v - 3 * s[i])));
    const hi = b.map((v, i) => (v == null || s[i] == null ? null : (m.rate ? Math.min(1, v + 3 * s[i]) : v + 3 * s[i])));
    const obs = rows.map((r) => r[metric]);
    const feature = FEATURES[fIdx];
    const anomalous = new Map(ANOMALY_HOURS.filter((a) => a.f === fIdx && a.e === env).map((a) => [a.t, a.detectors]));
    const flagged = rows.map((r) => anomalous.has(r.t));
    const traces = rows.length ? [
      { type: 'scatter', mode: 'lines', x, y: lo, line: { width: 0 }, hoverinfo: 'skip', showlegend: false, connectgaps: false },
      { type: 'scatter', mode: 'lines', x, y: hi, fill: 'tonexty', fillcolor: 'rgba(76,110,245,0.15)', line: { width: 0 }, name: 'expected range (baseline ± 3σ)', hoverinfo: 'skip', connectgaps: false },
      { type: 'scatter', mode: 'lines', x, y: b, name: 'seasonal baseline', line: { color: '#4c6ef5', dash: 'dash', width: 1.5 }, hovertemplate: `baseline: %{y:,.4~f}<extra></extra>` },
      { type: 'scatter', mode: 'lines', x, y: obs, name: pt(`${feature} · ${env}`), line: { color: '#1d2330', width: 1.8 }, hovertemplate: `observed: %{y:,.4~f}<extra></extra>` },
      { type: 'scatter', mode: 'markers', x: x.filter((_, i) => flagged[i]), y: obs.filter((_, i) => flagged[i]), name: 'anomalous hours', marker: { color: '#d62728', size: 8 }, text: rows.filter((_, i) => flagged[i]).map((r) => pt(anomalous.get(r.t))), hovertemplate: 'anomaly: %{text}<extra></extra>' },
    ].filter((t) => t.x.length) : [];
    draw('chart-band', traces, {
      hovermode: 'x unified',
      xaxis: { type: 'date', gridcolor: '#eef0f3', range: [iso(rangeStart()), iso(asOf)] },
      yaxis: { tickprefix: m.prefix, tickformat: m.rate ? '.0%' : undefined, gridcolor: '#eef0f3', rangemode: 'tozero' },
    }, 'No hourly rows for this feature and environment');
    const last = rows.length ? rows[rows.length - 1] : null;
    $('band-note').textContent = `${m.label} of ${feature || '—'} in ${env || '—'}`
      + (state.env === '*' ? ' (pick an environment in the filter to see another)' : '')
      + `. The baseline of the latest hour is ${last ? KIND_TEXT[last.kind] || last.kind : '—'}; the band is where a value is unremarkable (the detectors need at least 3σ).`;
  }
  function setupBand() {
    fillSelect($('band-feature'), FEATURES.map((f) => [f, f]), FEATURES[0] || '');
    fillSelect($('band-metric'), Object.entries(BAND_METRICS).map(([k, v]) => [k, v.label]), 'cost_usd');
    $('band-feature').addEventListener('change', renderBand);
    $('band-metric').addEventListener('change', renderBand);
  }

  // ------------------------------------------------------------------ drivers
  function driverTable(title, rows, total, id, labelCell) {
    const shown = rows.slice(0, 10);
    const table = el('table', { class: 'data', id: `drivers-${id}` },
      el('thead', null, el('tr', null,
        el('th', { text: title }), el('th', { class: 'num', text: 'Spend' }), el('th', { text: 'Share' }),
        el('th', { class: 'num', text: 'vs previous' }), el('th', { class: 'num', text: 'Calls' }),
        el('th', { class: 'num', text: 'Per call' }))));
    const body = el('tbody');
    for (const r of shown) {
      const share = ratio(r.cost, total);
      body.append(el('tr', { dataset: { key: r.key == null ? '' : r.key } },
        labelCell(r),
        el('td', { class: 'num', text: usd(r.cost, 2) }),
        el('td', null, el('div', { class: 'share' }, el('div', { class: 'bar', style: `width:${Math.max(1, Math.round((share || 0) * 80))}px` }), el('span', { text: pct(share) }))),
        el('td', { class: 'num' }, delta(r.cost, r.prev_cost, { goodWhen: 'down', noPrev: firstHour > asOf - 2 * rangeHours() * HOUR })),
        el('td', { class: 'num', text: num(r.calls) }),
        el('td', { class: 'num', text: usd(ratio(r.cost, r.priced_calls)) })));
    }
    const rest = total - sum(shown, 'cost');
    if (rows.length > shown.length || rest > 0.005) {
      body.append(el('tr', { class: 'other' },
        el('td', { text: rows.length > shown.length ? 'everything else' : 'not attributed' }),
        el('td', { class: 'num', text: usd(Math.max(0, rest), 2) }),
        el('td', { text: pct(ratio(Math.max(0, rest), total)) }), el('td'), el('td'), el('td')));
    }
    if (!shown.length) body.append(el('tr', null, el('td', { colspan: 6, class: 'unset', text: 'No calls in this range' })));
    table.append(body);
    return el('div', { class: 'card' }, el('h3', { text: title }), el('div', { class: 'table-wrap' }, table));
  }
  function nameCell(value, extra) {
    if (value == null || value === '') return el('td', { class: 'name unset', text: 'not set' });
    return el('td', { class: 'name' }, value, extra ? el('span', { class: 'muted', text: ` ${extra}` }) : null);
  }
  function renderDrivers() {
    const rows = fmRows();
    const total = sum(rows, 'cost');
    const agg = (keyFn) => [...groupBy(rows, keyFn).entries()].map(([key, rs]) => ({
      key, label: rs[0], cost: sum(rs, 'cost'), prev_cost: sum(rs, 'prev_cost'), calls: sum(rs, 'calls'),
      priced_calls: sum(rs, 'priced_calls'),
    })).sort((a, b) => b.cost - a.cost || b.calls - a.calls);
    const features = agg((r) => r.feature);
    const models = agg((r) => `${r.provider}/${r.model}`);
    const box = clear($('driver-tables'));
    box.append(driverTable('Features', features, total, 'features', (r) => nameCell(r.key)));
    box.append(driverTable('Models', models, total, 'models', (r) => nameCell(r.label.model, r.label.provider)));
    const ae = state.env === '*';
    const af = state.feature === '*';
    for (const [dim, title] of [['team', 'Teams'], ['user', 'Users'], ['endpoint', 'Endpoints']]) {
      const list = DRIVERS.filter((r) => r.dim === dim && r.r === state.r && r.all_env === ae && r.all_feat === af
        && (ae || r.environment === state.env) && (af || r.feature === state.feature));
      box.append(driverTable(title, list, total, `${dim}s`, (r) => nameCell(r.key)));
    }
    $('drivers-caption').textContent = `· ${rangeLabel(rangeHours())}, compared with the ${rangeHours() === 24 ? '24 h' : `${rangeHours() / 24} days`} before · ${usd(total, 2)} in all`;
  }

  // ------------------------------------------------------------------ incidents table
  // the marts' metric names say their unit: *_usd dollars, *_rate a share of calls
  function fmtMetric(metric, v) {
    if (v == null) return '—';
    if (/_usd$/.test(metric || '')) return usd(v);
    if (/_rate$/.test(metric || '') || metric === 'cache_read_share') return pct(v);
    return Math.abs(v) >= 100 ? num(v) : String(+v.toPrecision(4));
  }
  function openRunbook(path) {
    $('runbook-title').textContent = path;
    $('runbook-text').textContent = D.runbooks[path] || `The runbook ${path} is in the spendwatch repository.`;
    $('runbook-dialog').showModal();
  }
  function deliveryCell(key) {
    const list = DELIVERIES.get(key) || [];
    if (!list.length) return el('td', { class: 'unset', text: 'none recorded' });
    const kinds = new Set(list.map((d) => d.alert_kind));
    const label = (d) => (kinds.size > 1 ? `${d.channel} · ${d.alert_kind}` : d.channel);
    return el('td', null, list.map((d) => el('span', {
      class: `chip ${d.status}`,
      title: [`${d.alert_kind || ''} via ${d.channel}: ${d.status}`, d.attempts != null ? `attempts: ${d.attempts}` : '',
        d.sent_at ? `sent ${d.sent_at} UTC` : '', d.last_error ? `last error: ${d.last_error}` : ''].filter(Boolean).join('\n'),
      dataset: { channel: d.channel, status: d.status },
    }, `${label(d)}: ${String(d.status).replace('_', ' ')}`)));
  }
  // the cost drivers of the incident's peak hour (marts.anomalies.drivers, sorted by |usd|):
  // the three that moved most, each with its dollars; all seven in the tooltip
  function driversCell(json) {
    let list = [];
    try { list = JSON.parse(json || '[]'); } catch (e) { list = []; }
    const moved = list.filter((d) => d.usd);
    if (!moved.length) return el('td', { class: 'unset', text: '—' });
    const signed = (v) => `${v < 0 ? '−' : '+'}${usd(Math.abs(v), 2)}`;
    return el('td', { class: 'drivers', title: list.map((d) => `${d.driver}: ${signed(d.usd)}${d.share == null ? '' : ` (${Math.round(100 * d.share)} %)`}`).join('\n') },
      moved.slice(0, 3).map((d) => el('span', { class: 'chip driver', dataset: { driver: d.driver }, text: `${d.driver} ${signed(d.usd)}` })));
  }
  function renderIncidents() {
    const list = incidentsInScope(rangeStart());
    const table = clear($('incidents-table'));
    const heads = ['Severity', 'Detector', 'Where', 'First hour', 'Hours', 'Observed vs baseline', 'Excess', 'What happened', 'Cost drivers', 'Runbook'];
    if (META.alerting) heads.push('Delivery');
    table.append(el('thead', null, el('tr', null, heads.map((h) => el('th', { text: h, class: ['Hours', 'Excess'].includes(h) ? 'num' : null })))));
    const body = el('tbody');
    for (const i of list) {
      body.append(el('tr', { dataset: { incidentKey: i.incident_key, severity: i.severity, detector: i.detector, open: String(!!i.is_open) } },
        el('td', null, el('span', { class: `sev ${i.severity}`, text: i.severity }), i.is_open ? el('span', { class: 'open-badge', text: 'open' }) : null),
        el('td', { text: i.detector }),
        el('td', { class: 'name', text: incidentWhere(i) }),
        el('td', { text: nice(parseUTC(i.first_hour)) }),
        el('td', { class: 'num', text: String(i.hours) }),
        el('td', { text: `${fmtMetric(i.metric, i.observed_value)} vs ${fmtMetric(i.metric, i.baseline_value)}${i.ratio_to_baseline ? ` (${dec1.format(i.ratio_to_baseline)}×)` : ''}` }),
        el('td', { class: 'num', text: i.excess_usd == null ? '—' : usd(i.excess_usd, 2) }),
        el('td', { class: 'message', text: i.message || '' }),
        driversCell(i.drivers),
        el('td', null, i.runbook ? el('button', { type: 'button', class: 'link', onclick: () => openRunbook(i.runbook), text: i.runbook.split('/').pop() }) : '—'),
        META.alerting ? deliveryCell(i.incident_key) : null));
    }
    if (!list.length) body.append(el('tr', null, el('td', { colspan: heads.length, class: 'unset', text: 'No incidents in this range for these filters.' })));
    table.append(body);
    const open = list.filter((i) => i.is_open).length;
    const critical = list.filter((i) => i.severity === 'critical').length;
    const excess = sum(list, 'excess_usd');
    $('incidents-summary').textContent = `${list.length} incident${list.length === 1 ? '' : 's'} in the ${rangeLabel(rangeHours())}: ${open} open (an anomalous hour within the last ${META.open_within_hours} h), ${critical} critical, ${usd(excess, 2)} estimated excess spend.`
      + (META.alerting ? '' : ' Alert delivery state shows here once alerting is set up (ops.alert_deliveries).')
      + (INCIDENTS.length >= META.max_incidents ? ` Only the ${META.max_incidents} most relevant incidents are listed.` : '');
  }

  // ------------------------------------------------------------------ cache
  function renderCache() {
    const rows = fmRows();
    const byFeature = state.feature === '*';
    const groups = [...groupBy(rows, (r) => (byFeature ? r.feature : `${r.model}`)).entries()].map(([k, rs]) => ({
      key: k, calls: sum(rs, 'calls'), hits: sum(rs, 'cache_hit_calls'), saved: sum(rs, 'cache_savings'),
      input: sum(rs, 'input_cost'), read: sum(rs, 'cache_read_cost'), write: sum(rs, 'cache_write_cost'),
      output: sum(rs, 'output_cost'), cost: sum(rs, 'cost'), inTok: sum(rs, 'input_tokens'), readTok: sum(rs, 'cache_read_tokens'),
    })).sort((a, b) => b.cost - a.cost);
    const label = byFeature ? 'feature' : `model of ${state.feature}`;
    $('cache-caption').textContent = `· by ${label} · ${rangeLabel(rangeHours())}`;
    const calls = sum(groups, 'calls');
    const tot = { hits: sum(groups, 'hits'), saved: sum(groups, 'saved'), inTok: sum(groups, 'inTok'), readTok: sum(groups, 'readTok'), cost: sum(groups, 'cost') };
    const inputShare = ratio(sum(groups, 'input') + sum(groups, 'read') + sum(groups, 'write'), tot.cost);
    clear($('cache-kpis')).append(
      kpi('Calls reading the cache', pct(ratio(tot.hits, calls)), null, `${num(tot.hits)} of ${num(calls)} calls`),
      kpi('Input tokens from the cache', pct(ratio(tot.readTok, tot.inTok)), null, `${num(tot.readTok)} tokens`),
      kpi('Saved by cache reads', usd(tot.saved, 2), null, `would have cost ${usd(tot.cost + tot.saved, 2)} without`, { id: 'cache-saved-total' }),
      kpi('Input share of spend', pct(inputShare), null, 'uncached input + cache reads and writes'));
    const names = groups.map((g) => pt(g.key));
    draw('chart-cache-hit', groups.length ? [{
      type: 'bar', orientation: 'h', y: names, x: groups.map((g) => ratio(g.hits, g.calls)),
      marker: { color: '#1098ad' }, hovertemplate: '%{y}: %{x:.1%}<extra></extra>', name: 'hit rate',
    }] : [], { margin: { l: 150, r: 16, t: 8, b: 30 }, xaxis: { tickformat: '.0%', range: [0, 1], gridcolor: '#eef0f3' }, yaxis: { autorange: 'reversed', automargin: true }, showlegend: false }, 'No calls');
    draw('chart-cache-saved', groups.length ? [{
      type: 'bar', orientation: 'h', y: names, x: groups.map((g) => g.saved),
      marker: { color: '#2f9e44' }, hovertemplate: '%{y}: $%{x:,.2f}<extra></extra>', name: 'saved',
    }] : [], { margin: { l: 150, r: 16, t: 8, b: 30 }, xaxis: { tickprefix: '$', gridcolor: '#eef0f3', rangemode: 'tozero' }, yaxis: { autorange: 'reversed', automargin: true }, showlegend: false }, 'No calls');
    const parts = [['input', 'uncached input', '#4c6ef5'], ['read', 'cache reads', '#1098ad'], ['write', 'cache writes', '#74c0fc'], ['output', 'output', '#f76707']];
    draw('chart-cost-split', groups.length ? parts.map(([k, name, color]) => ({
      type: 'bar', orientation: 'h', name, y: names, x: groups.map((g) => g[k]), marker: { color },
      hovertemplate: `%{y} · ${name}: $%{x:,.2f}<extra></extra>`,
    })) : [], { barmode: 'stack', margin: { l: 150, r: 16, t: 8, b: 40 }, xaxis: { tickprefix: '$', gridcolor: '#eef0f3' }, yaxis: { autorange: 'reversed', automargin: true }, legend: { orientation: 'h', y: -0.2 } }, 'No calls');
    const outShare = ratio(sum(groups, 'output'), tot.cost);
    $('cost-split-note').textContent = tot.cost ? `Input (uncached, cache reads and writes) is ${pct(inputShare)} of the spend, output ${pct(outShare)}.` : '';
  }

  // ------------------------------------------------------------------ data quality
  function renderQuality() {
    $('quality-caption').textContent = `· ${rangeLabel(rangeHours())}`;
    const rej = REJECTED.filter((r) => r.r === state.r);
    const load = LOAD.find((r) => r.r === state.r) || {};
    $('load-summary').textContent = `${num(load.files)} landing files with ${num(load.lines)} lines in the ${rangeLabel(rangeHours())}: ${num(load.loaded)} loaded, ${num(load.rejected)} rejected (${pct(ratio(load.rejected, load.lines), 2)}); ${num(load.hours_with_files)} of ${num(load.hours)} hours had files. Rejected lines have no trusted environment or feature: the filters do not apply to them.`;
    draw('chart-rejected', rej.length ? [{
      type: 'bar', orientation: 'h', y: rej.map((r) => pt(r.reason)), x: rej.map((r) => r.lines),
      text: rej.map((r) => pt(r.example || '')), marker: { color: '#e03131' }, name: 'rejected lines',
      hovertemplate: '%{y}: %{x:,} lines<br>latest: %{text}<extra></extra>', textposition: 'none',
    }] : [], { margin: { l: 190, r: 16, t: 8, b: 30 }, xaxis: { gridcolor: '#eef0f3', rangemode: 'tozero' }, yaxis: { autorange: 'reversed', automargin: true }, showlegend: false }, 'No rejected lines in this range');

    const unpriced = [...groupBy(fmRows().filter((r) => r.calls > r.priced_calls), (r) => `${r.provider}\u0000${r.model}\u0000${r.environment}`).values()].map((rs) => ({
      provider: rs[0].provider, model: rs[0].model, environment: rs[0].environment,
      calls: sum(rs, 'calls') - sum(rs, 'priced_calls'),
      first: rs.map((r) => r.first_unpriced_hour).filter(Boolean).sort()[0],
      last: rs.map((r) => r.last_unpriced_hour).filter(Boolean).sort().pop(),
    })).sort((a, b) => b.calls - a.calls);
    const ut = clear($('unpriced-table'));
    ut.append(el('thead', null, el('tr', null, ['Provider', 'Model', 'Environment', 'Calls', 'First hour', 'Last hour'].map((h) => el('th', { text: h, class: h === 'Calls' ? 'num' : null })))));
    const ub = el('tbody');
    for (const u of unpriced) {
      ub.append(el('tr', null, el('td', { text: u.provider }), el('td', { class: 'name', text: u.model }), el('td', { text: u.environment }),
        el('td', { class: 'num', text: num(u.calls) }), el('td', { text: u.first ? nice(parseUTC(u.first)) : '—' }), el('td', { text: u.last ? nice(parseUTC(u.last)) : '—' })));
    }
    if (!unpriced.length) ub.append(el('tr', null, el('td', { colspan: 6, class: 'unset', text: 'Every call in this range has a price.' })));
    ut.append(ub);

    const usageRows = USAGE_DETAIL.filter((r) => r.r === state.r);
    const udt = clear($('usage-detail-table'));
    udt.append(el('thead', null, el('tr', null, ['Usage lacked', 'Provider', 'Model', 'Feature', 'Environment', 'Calls', 'Of calls', 'Cost as priced', 'Last hour'].map((h) => el('th', { text: h, class: ['Calls', 'Of calls', 'Cost as priced'].includes(h) ? 'num' : null })))));
    const udb = el('tbody');
    for (const u of usageRows) {
      udb.append(el('tr', { dataset: { detail: u.usage_detail } }, el('td', { text: u.usage_detail }), el('td', { text: u.provider }), el('td', { class: 'name', text: u.model }),
        el('td', { text: u.feature }), el('td', { text: u.environment }), el('td', { class: 'num', text: num(u.calls) }),
        el('td', { class: 'num', text: `${num(u.series_calls)} (${pct(ratio(u.calls, u.series_calls))})` }),
        el('td', { class: 'num', text: usd(u.cost_usd) }), el('td', { text: u.last_hour ? nice(parseUTC(u.last_hour)) : '—' })));
    }
    if (!usageRows.length) udb.append(el('tr', null, el('td', { colspan: 9, class: 'unset', text: 'Every call in this range reported the usage its price needs.' })));
    udt.append(udb);

    const ct = clear($('checks-table'));
    const head = () => el('thead', null, el('tr', null, ['Check', 'Suite', 'Asset', 'Level', 'Hours', 'Failed', 'Last failure', 'Observed', 'Details'].map((h) => el('th', { text: h, class: ['Hours', 'Failed'].includes(h) ? 'num' : null }))));
    const observed = (v) => (v != null && v !== '' && isFinite(Number(v)) ? String(+Number(v).toPrecision(4)) : (v || ''));
    const row = (c) => el('tr', { dataset: { failed: String(c.failed_hours > 0), check: c.check_name } },
      el('td', null, el('span', { class: `chip ${c.failed_hours ? 'failed' : 'sent'}`, text: c.failed_hours ? 'failed' : 'passed' }), ` ${c.check_name}`),
      el('td', { text: c.suite }), el('td', { text: c.asset }), el('td', { text: c.severity }),
      el('td', { class: 'num', text: num(c.hours) }), el('td', { class: 'num', text: num(c.failed_hours) }),
      el('td', { text: c.last_failed_hour ? nice(parseUTC(c.last_failed_hour)) : '—' }),
      el('td', { class: 'name', text: observed(c.last_failed_observed) }), el('td', { class: 'message', text: c.last_failed_details || '' }));
    const failed = CHECKS.filter((c) => c.failed_hours > 0);
    const passed = CHECKS.filter((c) => !(c.failed_hours > 0));
    ct.append(head());
    const cb = el('tbody');
    for (const c of failed) cb.append(row(c));
    if (!CHECKS.length) {
      cb.append(el('tr', null, el('td', { colspan: 9, class: 'unset', text: D.quality.has_checks
        ? 'No data-quality check results for the last 24 hours: the Dagster run records them (ops.check_results) as asset checks.'
        : 'This warehouse has no ops.check_results table yet.' })));
    } else if (!failed.length) {
      cb.append(el('tr', null, el('td', { colspan: 9, class: 'unset', text: 'No check failed in the last 24 hours.' })));
    }
    ct.append(cb);
    const box = clear($('checks-passed'));
    if (passed.length) {
      box.append(el('details', null, el('summary', { text: `${passed.length} check${passed.length === 1 ? '' : 's'} passed in every hour checked` }),
        el('div', { class: 'table-wrap' }, el('table', { class: 'data', id: 'checks-passed-table' }, head(), el('tbody', null, passed.map(row))))));
    }
  }

  // ------------------------------------------------------------------ reconciliation
  // Billed (provider cost reports) against computed, per day and model: shown only when a
  // report was imported. Billing knows no environment or feature, so the filters do not apply.
  function renderReconciliation() {
    const rows = records(D.reconciliation || {});
    if (!rows.length) return;
    $('reconciliation').hidden = false;
    $('nav-reconciliation').hidden = false;
    const mapped = rows.filter((r) => r.token_kind !== 'unmapped');
    const unmappedUsd = sum(rows, 'billed_usd') - sum(mapped, 'billed_usd');
    const findings = rows.filter((r) => r.severity).length;
    $('reconciliation-caption').textContent = `${rows[rows.length - 1].day} → ${rows[0].day}: billed ${usd(sum(mapped, 'billed_usd'))}, computed ${usd(sum(mapped, 'computed_usd'))}`
      + (unmappedUsd ? ` (and ${usd(unmappedUsd)} billed without a model)` : '')
      + `, ${findings} invoice_drift finding${findings === 1 ? '' : 's'}`;
    const table = clear($('reconciliation-table'));
    const headers = ['Day', 'Provider', 'Model', 'Billed', 'Computed', 'Difference', '%', 'Tokens recorded / billed', 'Likely cause', 'Alert'];
    const numeric = new Set(['Billed', 'Computed', 'Difference', '%', 'Tokens recorded / billed']);
    table.append(el('thead', null, el('tr', null, headers.map((h) => el('th', { text: h, class: numeric.has(h) ? 'num' : null })))));
    const body = el('tbody');
    for (const r of rows) {
      const unmapped = r.token_kind === 'unmapped';
      const model = unmapped ? `${r.model ? r.model + ' ' : ''}unmapped: ${r.line_items || '?'}` : r.model;
      const tokens = unmapped ? '' : `${num(r.recorded_tokens)} / ${r.billed_tokens == null ? '—' : num(r.billed_tokens)}`;
      const diff = r.difference_usd;
      body.append(el('tr', { dataset: { severity: r.severity || '', cause: r.likely_cause || '' } },
        el('td', { text: r.day }), el('td', { text: r.provider }), el('td', { class: 'name', text: model }),
        el('td', { class: 'num', text: usd(r.billed_usd) }), el('td', { class: 'num', text: usd(r.computed_usd) }),
        el('td', { class: 'num', text: (diff > 0 ? '+' : '') + usd(diff) }),
        el('td', { class: 'num', text: r.difference_pct == null ? '—' : `${r.difference_pct > 0 ? '+' : ''}${r.difference_pct.toFixed(1)} %` }),
        el('td', { class: 'num', text: tokens }), el('td', { text: r.likely_cause || '' }),
        el('td', null, r.severity ? el('span', { class: `chip ${r.severity}`, text: r.severity }) : '')));
    }
    table.append(body);
  }

  // ------------------------------------------------------------------ calculator
  const priceModels = [...groupBy(PRICES, (p) => `${p.provider}/${p.model}`).entries()].map(([key, rows]) => ({ key, provider: rows[0].provider, model: rows[0].model, tier: rows[0].tier, rows }));
  function priceRow(key, date) {
    const m = priceModels.find((x) => x.key === key);
    if (!m) return null;
    return m.rows.find((p) => p.valid_from <= date && (p.valid_to == null || date < p.valid_to)) || null;
  }
  /* The warehouse's rule (int_llm_calls_priced), applied to one call with these token counts:
   * cost = (input − cache reads − cache writes) × input price + cache reads × cache-read price
   *      + cache writes × cache-write price + output × output price, with the long-context
   * prices when the input exceeds the row's threshold, times (1 − batch discount) for batch. */
  function callCost(p, x) {
    const long = p.long_context_threshold_tokens != null && x.input > p.long_context_threshold_tokens;
    const factor = x.batch ? 1 - p.batch_discount : 1;
    const parts = {
      input: Math.max(0, x.input - x.read - x.write) * (long ? p.long_input_usd_per_token : p.input_usd_per_token) * factor,
      read: x.read * (long ? p.long_cache_read_usd_per_token : p.cache_read_usd_per_token) * factor,
      write: x.write * (long ? p.long_cache_write_usd_per_token : p.cache_write_usd_per_token) * factor,
      output: x.output * (long ? p.long_output_usd_per_token : p.output_usd_per_token) * factor,
    };
    return { long, parts, total: parts.input + parts.read + parts.write + parts.output };
  }
  const perM = (v) => (v == null ? '—' : `$${+(v * 1e6).toFixed(4)}`);
  function calcInputs() {
    const read = (id) => {
      const node = $(id);
      const v = node.value.trim() === '' ? NaN : Number(node.value);
      const bad = !isFinite(v) || v < 0 || (node.max && v > Number(node.max));
      node.setAttribute('aria-invalid', String(bad));
      return bad ? null : v;
    };
    const x = { calls: read('calc-calls'), input: read('calc-input'), output: read('calc-output'), readPct: read('calc-cache-read'), writePct: read('calc-cache-write') };
    let error = '';
    if (Object.values(x).some((v) => v == null)) error = 'Enter non-negative numbers (cache shares between 0 and 100 %).';
    else if (x.readPct + x.writePct > 100) error = 'Cache reads and writes are part of the input: together at most 100 %.';
    $('calc-error').textContent = error;
    if (error) return null;
    return { calls: x.calls, input: x.input, output: x.output, read: x.input * x.readPct / 100, write: x.input * x.writePct / 100, batch: $('calc-tier').value === 'batch' };
  }
  function setOut(id, text, value) {
    const node = $(id);
    node.textContent = text;
    if (value == null || !isFinite(value)) delete node.dataset.value;
    else node.dataset.value = String(value);
  }
  function renderCalc() {
    const x = calcInputs();
    const date = $('calc-price-date').value || META.today;
    const results = {};
    for (const side of ['current', 'candidate']) {
      const key = $(`calc-${side}`).value;
      const m = priceModels.find((pm) => pm.key === key);
      const p = priceRow(key, date);
      $(`calc-model-${side}`).textContent = m ? `${m.model} (${m.provider})` : '—';
      $(`calc-row-${side}`).textContent = p ? `valid ${p.valid_from} → ${p.valid_to || 'now'} · ${p.source || ''}` : `no price valid on ${date}`;
      if (p) {
        const long = p.long_context_threshold_tokens != null ? ` · above ${num(p.long_context_threshold_tokens)} input tokens: ${perM(p.long_input_usd_per_token)} · ${perM(p.long_output_usd_per_token)}` : '';
        $(`calc-rates-${side}`).textContent = `${perM(p.input_usd_per_token)} · ${perM(p.output_usd_per_token)} · ${perM(p.cache_read_usd_per_token)} · ${perM(p.cache_write_usd_per_token)}${long}`;
      } else $(`calc-rates-${side}`).textContent = '—';
      if (p && x) {
        const c = callCost(p, x);
        const monthly = c.total * x.calls * 30;
        results[side] = { c, monthly, model: m.model };
        setOut(`cost_per_call-${side}`, `${usd(c.total, 6)}${c.long ? ' (long-context tier)' : ''}${x.batch ? ' (batch)' : ''}`, c.total);
        setOut(`calculated_monthly_cost-${side}`, usd(monthly, 2), monthly);
      } else {
        setOut(`cost_per_call-${side}`, '—', null);
        setOut(`calculated_monthly_cost-${side}`, '—', null);
      }
    }
    const deltaNode = $('comparison_delta');
    if (results.current && results.candidate) {
      const d = results.candidate.monthly - results.current.monthly;
      const rel = ratio(d, results.current.monthly);
      deltaNode.textContent = `${d > 0 ? '+' : d < 0 ? '−' : ''}${usd(Math.abs(d), 2)} per month (${rel == null ? 'n/a' : `${rel > 0 ? '+' : rel < 0 ? '−' : ''}${(Math.abs(rel) * 100).toFixed(1)} %`})`;
      deltaNode.className = d > 0 ? 'up' : d < 0 ? 'down' : '';
      deltaNode.dataset.value = String(d);
      if (rel == null) delete deltaNode.dataset.percent; else deltaNode.dataset.percent = String(rel * 100);
    } else {
      deltaNode.textContent = '—';
      deltaNode.className = '';
      delete deltaNode.dataset.value;
      delete deltaNode.dataset.percent;
    }
    const parts = [['input', 'uncached input', '#4c6ef5'], ['read', 'cache reads', '#1098ad'], ['write', 'cache writes', '#74c0fc'], ['output', 'output', '#f76707']];
    const sides = ['current', 'candidate'].filter((s) => results[s]);
    draw('chart-calc', sides.length ? parts.map(([k, name, color]) => ({
      type: 'bar', name, x: sides.map((s) => pt(`${s}: ${results[s].model}`)), y: sides.map((s) => results[s].c.parts[k] * x.calls * 30),
      marker: { color }, hovertemplate: `${name}: $%{y:,.2f}<extra></extra>`,
    })) : [], { barmode: 'stack', margin: { l: 70, r: 16, t: 8, b: 40 }, yaxis: { tickprefix: '$', gridcolor: '#eef0f3', rangemode: 'tozero' }, legend: { orientation: 'h', y: -0.2 } }, 'Enter the traffic and pick models with a price on that date');
  }
  function prefill() {
    const f = $('calc-feature').value;
    const note = $('calc-prefill-note');
    const actual = $('calc-actual');
    actual.textContent = '';
    if (!f) { note.textContent = 'Your own numbers.'; renderCalc(); return; }
    const rows = FM.filter((r) => r.r === state.r && envOk(r.environment) && r.feature === f);
    const calls = sum(rows, 'calls');
    const days = rangeHours() / 24;
    const input = sum(rows, 'input_tokens');
    const round = (v, d) => String(+v.toFixed(d));
    $('calc-calls').value = round(calls / days, 2);
    $('calc-input').value = round(ratio(input, calls) || 0, 3);
    $('calc-output').value = round(ratio(sum(rows, 'output_tokens'), calls) || 0, 3);
    $('calc-cache-read').value = round((ratio(sum(rows, 'cache_read_tokens'), input) || 0) * 100, 3);
    $('calc-cache-write').value = round((ratio(sum(rows, 'cache_write_tokens'), input) || 0) * 100, 3);
    $('calc-tier').value = 'standard';
    const top = [...groupBy(rows, (r) => `${r.provider}/${r.model}`).entries()].sort((a, b) => sum(b[1], 'calls') - sum(a[1], 'calls'))[0];
    if (top && priceModels.some((m) => m.key === top[0])) {
      $('calc-current').value = top[0];
      $('calc-candidate').value = cheaperSibling(top[0]);
    }
    $('calc-price-date').value = META.today;
    const models = groupBy(rows, (r) => r.model);
    note.textContent = `Prefilled from ${f} in ${state.env === '*' ? 'all environments' : state.env}, ${rangeLabel(rangeHours())}: ${num(calls)} calls`
      + (models.size > 1 ? ` on ${models.size} models (priced here as if all went to the current model).` : '.');
    const cost = sum(rows, 'cost');
    actual.textContent = `Warehouse: ${f} cost ${usd(cost, 2)} in the ${rangeLabel(rangeHours())}, ${usd(cost / days * 30, 2)} per 30 days at that rate (at the prices valid when the calls were made).`;
    renderCalc();
  }
  function cheaperSibling(key) {
    const cur = priceModels.find((m) => m.key === key);
    const today = META.today;
    const curRow = cur && priceRow(key, today);
    const options = priceModels.filter((m) => m.key !== key && (!cur || m.provider === cur.provider))
      .map((m) => ({ m, p: priceRow(m.key, today) })).filter((o) => o.p)
      .sort((a, b) => a.p.input_usd_per_token - b.p.input_usd_per_token);
    const cheaper = options.filter((o) => !curRow || o.p.input_usd_per_token < curRow.input_usd_per_token);
    return ((cheaper.length ? cheaper[cheaper.length - 1] : options[0]) || { m: { key } }).m.key;
  }
  function setupCalc() {
    const features = [...new Set(FM.map((r) => r.feature))].sort();
    fillSelect($('calc-feature'), [['', '— your own numbers —'], ...features.map((f) => [f, f])], '');
    const opts = priceModels.map((m) => [m.key, `${m.model} (${m.provider}${m.tier ? `, ${m.tier}` : ''})`]);
    fillSelect($('calc-current'), opts, priceModels.some((m) => m.key === 'openai/gpt-4o') ? 'openai/gpt-4o' : (opts[0] || [''])[0]);
    fillSelect($('calc-candidate'), opts, cheaperSibling($('calc-current').value));
    $('calc-price-date').value = META.today;
    $('calc-feature').addEventListener('change', prefill);
    for (const id of ['calc-calls', 'calc-input', 'calc-output', 'calc-cache-read', 'calc-cache-write', 'calc-price-date']) {
      $(id).addEventListener('input', renderCalc);
    }
    for (const id of ['calc-tier', 'calc-current', 'calc-candidate']) $(id).addEventListener('change', renderCalc);
    $('calc-today').addEventListener('click', () => { $('calc-price-date').value = META.today; renderCalc(); });
    $('calc-swap').addEventListener('click', () => {
      const a = $('calc-current').value;
      $('calc-current').value = $('calc-candidate').value;
      $('calc-candidate').value = a;
      renderCalc();
    });
    $('calc-form').addEventListener('submit', (e) => e.preventDefault());
    // start from the feature that spends most, so the first view shows real traffic
    const top = FEATURES.find((f) => features.includes(f));
    if (top) { $('calc-feature').value = top; prefill(); } else renderCalc();
  }

  // ------------------------------------------------------------------ wiring
  function renderAll() {
    renderKpis();
    renderSpend();
    renderDrivers();
    renderIncidents();
    renderCache();
    renderQuality();
  }
  $('runbook-close').addEventListener('click', () => $('runbook-dialog').close());
  renderHeader();
  renderFilters();
  setupBand();
  renderAll();
  renderReconciliation();
  setupCalc();
  document.body.dataset.ready = 'true';
}());
