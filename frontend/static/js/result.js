// A result page: the image with its label overlay, summary measures, size and intensity plots, the sortable
// measurement table (a row shows its object), provenance, and for analysts share links and "reproduce".
import { csrfToken } from './csrf.js';
import { barChart } from './plots.js';
import { addLabelOverlay, columnUnits, formatValue, labelColor, overlayControls, unitSymbol } from './overlay.js';
import { planeSize, showBox, startViewer } from './viewer.js';

const root = document.getElementById('result');
const PAGE_ROWS = 50;
const FIRST_MEASURES = ['object count', 'object_count', 'foreground fraction', 'foreground_fraction', 'porosity',
                        'mean equivalent diameter', 'mean_equivalent_diameter'];

const $ = (selector, scope = document) => scope.querySelector(selector);
const h = (tag, attributes = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === 'class') node.className = value;
    else if (value !== null && value !== undefined && value !== false) node.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
};
const when = (iso) => (iso ? new Date(iso).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' }) : '–');
const shortHash = (hash) => (hash ? `${hash.slice(0, 12)}…` : '–');
const bytes = (n) => {
  if (!Number.isFinite(n)) return '–';
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
};
const seconds = (s) => (!Number.isFinite(s) ? '–' : s < 90 ? `${s.toFixed(1)} s` : s < 5400 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(1)} h`);

async function getJson(url) {
  const response = await fetch(url, { headers: { Accept: 'application/json' } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

async function postJson(url, payload = {}) {
  const response = await fetch(url, {
    method: 'POST', body: JSON.stringify(payload),
    headers: { 'Content-Type': 'application/json', Accept: 'application/json', 'X-CSRFToken': csrfToken() },
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

// ---- summary measures as big numbers ----
function measureText({ name, value, unit }) {
  const lower = name.toLowerCase();
  if (unit === '1' || lower.includes('fraction') || lower.includes('porosity')) {
    return { number: `${(100 * value).toFixed(value < 0.001 ? 3 : 1)}`, unit: '%' };
  }
  return { number: formatValue(value), unit: unitSymbol(unit) };
}

function renderMeasures(result) {
  const box = $('#measures');
  const measures = [...(result.measures || [])];
  const summary = result.summary || {};
  if (!measures.some((m) => /object.count/.test(m.name)) && summary.object_count !== undefined) {
    measures.push({ name: 'object count', value: summary.object_count, unit: '' });
  }
  if (!measures.some((m) => /foreground.fraction/.test(m.name)) && summary.foreground_fraction !== undefined) {
    measures.push({ name: 'foreground fraction', value: summary.foreground_fraction, unit: '1' });
  }
  for (const measure of measures) {  // lengths recorded without a unit are in the image's unit (or pixels)
    if (!measure.unit && /diameter|length|distance/.test(measure.name)) measure.unit = summary.unit || 'px';
  }
  const rank = (m) => { const i = FIRST_MEASURES.indexOf(m.name.toLowerCase()); return i < 0 ? 99 : i; };
  measures.sort((a, b) => rank(a) - rank(b));
  box.replaceChildren(...measures.map((measure) => {
    const { number, unit } = measureText(measure);
    return h('div', { class: 'measure card' },
             h('span', { class: 'measure-value' }, number, unit ? h('span', { class: 'measure-unit' }, ` ${unit}`) : null),
             h('span', { class: 'measure-name' }, measure.name.replace(/_/g, ' ')));
  }));
}

// ---- plots ----
function renderPlots(result) {
  const summary = result.summary || {};
  const unit = unitSymbol(summary.unit || '') || 'px';
  const sizes = summary.size_histogram;
  const sizeFigure = $('#size-plot');
  if (sizes?.counts?.length) {
    sizeFigure.querySelector('figcaption').textContent = `Object sizes (${formatValue(summary.object_count ?? 0)} objects)`;
    barChart(sizeFigure.querySelector('.plot-box'), sizes, {
      logX: true, xLabel: `equivalent diameter (${unit})`, yLabel: 'objects', unit, title: 'Histogram of object sizes',
    });
  } else {
    sizeFigure.hidden = true;
  }
  // object mean intensities, with the threshold when the method had one
  const intensity = summary.intensity_histogram;
  const intensityFigure = $('#intensity-plot');
  if (intensity?.counts?.length) {
    const threshold = Number.isFinite(summary.threshold) ? { value: summary.threshold, label: 'threshold' } : null;
    const caption = intensityFigure.querySelector('figcaption');
    caption.textContent = 'Object intensities';
    const nonzero = intensity.counts.filter((n) => n > 0).sort((a, b) => a - b);
    const logY = nonzero.length > 2 && nonzero[nonzero.length - 1] > 50 * nonzero[Math.floor(nonzero.length / 2)];
    const channel = summary.image?.channel_name;
    const chart = barChart(intensityFigure.querySelector('.plot-box'), intensity, {
      xLabel: `mean intensity${channel ? ` (${channel})` : ''}`, yLabel: 'objects', marker: threshold,
      title: 'Histogram of the mean intensity of each object', logY,
    });
    const toggle = h('label', { class: 'inline small plot-toggle' }, h('input', { type: 'checkbox', class: 'log-y' }), 'log scale');
    toggle.querySelector('input').checked = logY;
    toggle.querySelector('input').addEventListener('change', (event) => chart.update({ logY: event.target.checked }));
    caption.append(toggle);
  } else {
    intensityFigure.hidden = true;
  }
}

// ---- the measurement table ----
// How columns are shown: classes by name (classifier), `class` hidden for single-class methods.
function columnPresentation(result) {
  const names = result.summary?.class_names || result.params?.class_names;
  const hidden = new Set(result.method === 'classifier' ? [] : ['class']);
  const formatters = {};
  if (Array.isArray(names)) formatters.class = (value) => names[value] ?? formatValue(value);
  return { hidden, formatters };
}

function bboxOf(columns, row) {
  const at = (name) => { const i = columns.indexOf(name); return i < 0 ? null : row[i]; };
  const x0 = at('bbox_x0'), y0 = at('bbox_y0'), x1 = at('bbox_x1'), y1 = at('bbox_y1');
  if ([x0, y0, x1, y1].some((v) => v === null)) return null;
  const z0 = at('bbox_z0'), z1 = at('bbox_z1');
  const z = z0 !== null ? Math.floor(((z0 ?? 0) + (z1 ?? z0 + 1) - 1) / 2) : null;
  return { x0, y0, x1, y1, z };
}

function setUpTable(result, viewerReady, units, { hidden, formatters }) {
  const table = { sort: 'label', order: 'asc', offset: 0, total: 0, columns: [], selected: null };
  window.tilescopeTable = table;
  const thead = $('#objects-table thead'), tbody = $('#objects-table tbody');
  const pager = $('#pager');
  const load = async () => {
    const params = new URLSearchParams({ sort: table.sort, order: table.order, offset: table.offset, limit: PAGE_ROWS });
    let page;
    try {
      page = await getJson(`${result.objects_url}?${params}`);
    } catch (error) {
      tbody.replaceChildren(h('tr', {}, h('td', { class: 'form-error' }, `Cannot load the table: ${error.message}`)));
      return;
    }
    table.total = page.total;
    table.columns = page.columns.map((c) => c.name);
    for (const c of page.columns) if (c.unit && !units[c.name]) units[c.name] = c.unit;
    const shown = page.columns.map((c, i) => [c, i]).filter(([c]) => !hidden.has(c.name));
    thead.replaceChildren(h('tr', {}, ...shown.map(([column]) => {
      const sorted = column.name === table.sort;
      const unit = units[column.name];
      const button = h('button', { type: 'button', class: 'sort' }, column.name.replace(/_/g, ' '),
                       unit ? h('span', { class: 'col-unit' }, ` ${unit}`) : null,
                       h('span', { class: 'sort-mark', 'aria-hidden': 'true' }, sorted ? (table.order === 'asc' ? ' ▲' : ' ▼') : ''));
      button.addEventListener('click', () => {
        table.order = sorted && table.order === 'asc' ? 'desc' : sorted ? 'asc' : (column.name === 'label' ? 'asc' : 'desc');
        table.sort = column.name;
        table.offset = 0;
        load();
      });
      return h('th', { scope: 'col', 'aria-sort': sorted ? (table.order === 'asc' ? 'ascending' : 'descending') : 'none',
                       'data-column': column.name }, button);
    })));
    tbody.replaceChildren(...page.rows.map((row) => {
      const label = row[table.columns.indexOf('label')];
      const tr = h('tr', { tabindex: '0' }, ...shown.map(([column, i]) => {
        const value = row[i];
        const cell = h('td', { class: typeof value === 'number' ? 'num' : '', 'data-column': column.name },
                       (formatters[column.name] || formatValue)(value));
        if (column.name === 'label') cell.prepend(h('span', { class: 'swatch', style: `background:${labelColor(value)}` }));
        return cell;
      }));
      tr.dataset.label = String(label);
      if (String(label) === String(table.selected)) tr.classList.add('selected');
      const choose = () => {
        table.selected = label;
        for (const other of tbody.querySelectorAll('tr.selected')) other.classList.remove('selected');
        tr.classList.add('selected');
        const box = bboxOf(table.columns, row);
        if (box) viewerReady.then((state) => showObject(state, box));
      };
      tr.addEventListener('click', choose);
      tr.addEventListener('keydown', (event) => { if (event.key === 'Enter' || event.key === ' ') { event.preventDefault(); choose(); } });
      return tr;
    }));
    $('#objects-total').textContent = `${page.total.toLocaleString()} in all`;
    const last = Math.min(table.offset + PAGE_ROWS, page.total);
    pager.querySelector('.page-info').textContent = page.total ? `${(table.offset + 1).toLocaleString()}–${last.toLocaleString()} of ${page.total.toLocaleString()}` : 'no objects';
    pager.querySelector('.prev').disabled = table.offset === 0;
    pager.querySelector('.next').disabled = last >= page.total;
    pager.hidden = page.total <= PAGE_ROWS;
    table.loaded = (table.loaded || 0) + 1;
  };
  pager.querySelector('.prev').addEventListener('click', () => { table.offset = Math.max(0, table.offset - PAGE_ROWS); load(); });
  pager.querySelector('.next').addEventListener('click', () => { table.offset += PAGE_ROWS; load(); });
  return load();
}

// Zoom to an object's box, mark it (until another plane or slice is shown), and bring the viewer into sight
// (on a phone it is above the table).
let highlight = null;
function unmark(state) {
  if (highlight) state.viewer.removeOverlay(highlight);
  highlight = null;
}
function showObject(state, box) {
  if (!state.unmarkOnChange) {
    state.unmarkOnChange = true;
    state.onChange(() => {
      if (highlight && (state.plane !== 'xy' || (state.info.ndim === 3 && state.slice.xy !== highlight.z))) unmark(state);
    });
  }
  showBox(state, box);
  const viewer = state.viewer;
  const mark = () => {
    unmark(state);
    const item = viewer.world.getItemAt(0);
    highlight = h('div', { class: 'object-highlight' });
    highlight.z = box.z;
    const rect = new OpenSeadragon.Rect(box.x0, box.y0, Math.max(1, box.x1 - box.x0), Math.max(1, box.y1 - box.y0));
    viewer.addOverlay({ element: highlight, location: item.imageToViewportRectangle(rect) });
  };
  if (state.info.ndim === 3) setTimeout(mark, 400); else mark();
  const top = state.element.getBoundingClientRect().top;
  if (top < 0 || top > window.innerHeight * 0.5) state.element.closest('.viewer-box').scrollIntoView({ behavior: 'smooth', block: 'start' });
}

// ---- provenance ----
function facts(pairs) {
  const list = h('dl', { class: 'facts' });
  for (const [name, value] of pairs) {
    if (value === undefined || value === null || value === '') continue;
    list.append(h('dt', {}, name), h('dd', {}, value));
  }
  return list;
}

function hashValue(hash) {
  return hash ? h('span', { class: 'mono small hash', title: hash }, shortHash(hash)) : '–';
}

function paramsText(params) {
  const entries = Object.entries(params || {}).filter(([key, value]) => !['method', 'scribbles'].includes(key) && value !== null);
  const chips = h('span', { class: 'param-chips' });
  for (const [key, value] of entries) {
    const text = Array.isArray(value) && value.length > 6 ? `${value.length} items` : typeof value === 'object' && value !== null ? JSON.stringify(value) : String(value);
    chips.append(h('code', { class: 'chip-code' }, `${key} = ${text}`));
  }
  if (Array.isArray(params?.scribbles)) chips.append(h('code', { class: 'chip-code' }, `scribbles = ${params.scribbles.length} strokes`));
  return entries.length || params?.scribbles ? chips : 'defaults';
}

function renderProvenance(result) {
  const prov = result.provenance_summary || {};
  const body = $('#provenance-body');
  $('#prov-link').href = result.provenance_url;
  const dataset = prov.dataset || {};
  const job = prov.job || {};
  const resources = prov.resources || {};
  const software = prov.software || {};
  const wall = Number.isFinite(resources.wallSeconds) ? resources.wallSeconds
    : (job.started && job.ended ? (new Date(job.ended) - new Date(job.started)) / 1000 : null);
  const outputs = Object.entries(prov.outputs || result.outputs || {});
  const outputList = h('table', { class: 'mini-table' },
    h('thead', {}, h('tr', {}, h('th', {}, 'file'), h('th', {}, 'size'), h('th', {}, 'SHA-256'))),
    h('tbody', {}, ...outputs.map(([name, o]) => h('tr', {}, h('td', {}, name), h('td', { class: 'num' }, bytes(o.bytes)), h('td', {}, hashValue(o.sha256))))));
  const libraries = Object.entries(software).filter(([k]) => !['tilescope', 'git_commit', 'python'].includes(k));
  body.replaceChildren(
    facts([
      ['Method', prov.method || result.method],
      ['Parameters', paramsText(prov.params || result.params)],
      ['Input', dataset.original_filename ? h('span', {}, `${dataset.original_filename} `, hashValue(dataset.original_sha256)) : result.dataset?.name],
      ['Pyramid', dataset.pyramid_checksum ? hashValue(dataset.pyramid_checksum) : null],
      ['Code', software.tilescope ? `Tilescope ${software.tilescope}${software.git_commit ? ` · ${software.git_commit.slice(0, 10)}${software.git_commit.endsWith('+dirty') ? '+dirty' : ''}` : ''} · Python ${software.python || '?'}` : null],
      ['Run by', result.created_by || null],
      ['Queued', job.queued ? when(job.queued) : null],
      ['Ran', job.started ? `${when(job.started)}${wall !== null ? `, took ${seconds(wall)}` : ''}` : null],
      ['Resources', [Number.isFinite(resources.cpuSeconds) ? `${seconds(resources.cpuSeconds)} CPU` : null,
                     Number.isFinite(resources.peakRssBytes) ? `${bytes(resources.peakRssBytes)} peak memory` : null].filter(Boolean).join(' · ') || null],
      ['Host', job.host || null],
    ]),
    h('details', { class: 'spaced-small' }, h('summary', {}, `Outputs (${outputs.length}) with checksums`), outputList),
    libraries.length ? h('details', { class: 'spaced-small' }, h('summary', {}, 'Library versions'),
                         facts(libraries.map(([name, version]) => [name, version]))) : '',
  );
}

// ---- reproduction ----
function renderReproduction(result) {
  const badge = $('#reproduction-badge');
  const show = (reproduction, text) => {
    badge.hidden = false;
    badge.className = `repro-badge ${reproduction.matches ? 'repro-ok' : 'repro-bad'}`;
    badge.textContent = `${text}: outputs ${reproduction.matches ? 'match ✓' : 'differ ✗'}`;
    const differing = Object.entries(reproduction.outputs || {}).filter(([, row]) => !row.match).map(([name]) => name);
    badge.title = reproduction.matches ? 'Every compared output has the same checksum.' : `Different: ${differing.join(', ')}`;
  };
  if (result.reproduces && result.reproduction && Object.keys(result.reproduction).length) {
    show(result.reproduction, 'reproduction');
    const link = h('a', { href: `/results/${encodeURIComponent(result.reproduces)}` }, 'the original result');
    $('.result-head p').append(' · reproduces ', link);
  } else if (result.reproductions?.length) {
    const latest = result.reproductions[result.reproductions.length - 1];
    if (latest.reproduction && Object.keys(latest.reproduction).length) show(latest.reproduction, 'reproduced');
  }
  const list = $('#reproductions');
  if (list) {
    list.replaceChildren(...(result.reproductions || []).map((r) => h('li', {},
      h('a', { href: r.url }, when(r.created_at)), ' — ',
      r.reproduction?.matches ? h('span', { class: 'ok' }, 'outputs match ✓') : h('span', { class: 'bad' }, 'outputs differ ✗'))));
  }
}

function setUpReproduce(result) {
  const button = $('#reproduce');
  if (!button || !result.reproduce_url) return;
  const status = $('#reproduce-status');
  button.addEventListener('click', async () => {
    button.disabled = true;
    status.hidden = false;
    status.className = 'small';
    status.textContent = 'Queueing…';
    try {
      const job = await postJson(result.reproduce_url);
      status.replaceChildren('Reproduction queued. ', h('a', { href: `/jobs/${encodeURIComponent(job.job_id)}` }, 'Follow the job →'));
    } catch (error) {
      status.className = 'small form-error';
      status.textContent = `Could not queue: ${error.message}`;
      button.disabled = false;
    }
  });
}

// ---- share links ----
async function copyText(text, input) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    input.select();
    return document.execCommand('copy');
  }
}

function setUpShares(result) {
  const form = $('#share-form');
  if (!form || !result.shares_url) return;
  const list = $('#share-list'), error = $('#share-error');
  const showError = (message) => { error.textContent = message || ''; error.hidden = !message; };
  const refresh = async () => {
    let shares;
    try {
      ({ shares } = await getJson(result.shares_url));
    } catch (e) {
      showError(`Cannot list the share links: ${e.message}`);
      return;
    }
    list.replaceChildren(...shares.map((share) => {
      const state = share.revoked_at ? 'revoked' : share.active ? 'active' : 'expired';
      const revoke = h('button', { type: 'button', class: 'small-button revoke' }, 'Revoke');
      revoke.hidden = state !== 'active';
      revoke.addEventListener('click', async () => {
        revoke.disabled = true;
        try {
          await postJson(`/api/v1/shares/${encodeURIComponent(share.id)}/revoke`);
        } catch (e) {
          showError(`Could not revoke: ${e.message}`);
        }
        refresh();
      });
      const used = share.uses ? `opened ${share.uses}×, last ${when(share.last_used_at)}` : 'not opened yet';
      return h('li', { class: `share share-${state}`, 'data-id': share.id },
               h('div', { class: 'share-main' },
                 h('strong', {}, share.label || 'unnamed link'), ' ', h('span', { class: `status status-${state === 'active' ? 'ready' : 'failed'}` }, state),
                 h('div', { class: 'muted small' },
                   `${state === 'active' ? 'expires' : state === 'revoked' ? 'revoked' : 'expired'} ${when(share.revoked_at || share.expires_at)} · ${used}`
                   + (share.created_by ? ` · by ${share.created_by}` : ''))),
               revoke);
    }));
  };
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showError('');
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      const share = await postJson(result.shares_url, { days: parseInt(form.days.value, 10), label: form.label.value.trim() });
      $('#share-url').value = share.url;
      $('#share-new').hidden = false;
      $('#share-copy').textContent = 'Copy';
      form.label.value = '';
      await refresh();
    } catch (e) {
      showError(`Could not create a link: ${e.message}`);
    } finally {
      button.disabled = false;
    }
  });
  $('#share-copy').addEventListener('click', async () => {
    const input = $('#share-url');
    $('#share-copy').textContent = (await copyText(input.value, input)) ? 'Copied ✓' : 'Select and copy';
  });
  refresh();
}

// Stacked layouts (phones, narrow windows): a box as tall as the image needs, plus room for the controls.
const CONTROLS_PX = 96;
function fitViewerBox(state) {
  const box = state.element.closest('.viewer-box');
  if (window.matchMedia('(min-width: 1100px)').matches || !box) return;
  const { width, height } = planeSize(state.info, state.plane);
  const wanted = box.clientWidth * (height / width) + CONTROLS_PX;
  box.style.height = `${Math.round(Math.max(260, Math.min(wanted, window.innerHeight * 0.62)))}px`;
  if (!window.location.hash.includes('zoom=')) requestAnimationFrame(() => state.viewer.viewport.goHome(true));
}

// ---- the page ----
async function start() {
  let result;
  try {
    result = await getJson(root.dataset.api);
  } catch (error) {
    root.replaceChildren(h('div', { class: 'card error-box', role: 'alert' }, `Cannot load this result: ${error.message}`));
    return;
  }
  window.tilescopeResult = result;
  if (result.created_by) $('#result-by').textContent = ` · by ${result.created_by}`;
  $('#result-time').textContent = when(result.created_at);
  $('#csv-link').href = result.csv_url;
  renderMeasures(result);
  renderPlots(result);
  renderProvenance(result);
  renderReproduction(result);
  setUpShares(result);
  setUpReproduce(result);

  const units = columnUnits(result.summary || {});
  const element = $('#viewer');
  const viewerReady = startViewer(element, {
    info: result.dataset.info_url, tiles: result.dataset.tiles_url, histogram: result.dataset.histogram_url,
    iiif: result.dataset.iiif_url, name: result.dataset.name, prefix: root.dataset.prefix, token: result.dataset.token,
    root: $('.viewer-box'),
  }).then((state) => state.ready);
  viewerReady.catch(() => {});
  const presentation = columnPresentation(result);
  const tableReady = setUpTable(result, viewerReady, units, presentation);
  const state = await viewerReady;
  fitViewerBox(state);
  await tableReady;
  const overlay = await addLabelOverlay(state, { labels: result.labels, objectAtUrl: result.object_at_url, units,
                                                 formatters: presentation.formatters, hiddenColumns: presentation.hidden });
  $('#overlay-bar').prepend(overlayControls(overlay));
}

start();
