// Label overlay: a result's label pyramid drawn over the image as a second OpenSeadragon layer (in every
// pane of a volume, following plane and slice), shown or hidden (key l), with an opacity and fill or
// outlines; hovering (a tap on touch screens) shows the measurements of the object under the pointer.
import { imageItem, planeSize, tileSourceFor, voxelAt } from './viewer.js';

const LOOKUP_INTERVAL_MS = 125;  // at most 8 object look-ups a second
const LOOKUP_CACHE_SIZE = 2000;
const TOKEN_REFRESH_MS = 10 * 60 * 1000;
const DROP_OLD_AFTER_MS = 4000;  // an old layer goes even if its successor never finishes loading
const HIDDEN_COLUMNS = /^(label|bbox_)/;
const OUTLINE_OPACITY = 0.95;
// The object card lists the measurements people ask about first; the rest follow in the server's order.
const CARD_ORDER = ['class', 'voxels', 'area', 'volume', 'equivalent_diameter', 'mean_intensity', 'min_intensity',
                    'max_intensity', 'std_intensity'];
const cardRank = (name) => { const i = CARD_ORDER.indexOf(name); return i < 0 ? CARD_ORDER.length : i; };

const layerItems = (viewer) => {
  const items = [];
  for (let i = 0; i < viewer.world.getItemCount(); i += 1) {
    const item = viewer.world.getItemAt(i);
    if (item.source.layer === 'labels') items.push(item);
  }
  return items;
};

// Labels stay above the image: whenever an image layer is added (a new slice, plane or display), lift them.
function keepLabelsOnTop(viewer) {
  if (viewer.tilescopeLabelsOnTop) return;
  viewer.tilescopeLabelsOnTop = true;
  viewer.world.addHandler('add-item', ({ item }) => {
    if (item.source.layer === 'labels') return;
    for (const labels of layerItems(viewer)) viewer.world.setItemIndex(labels, viewer.world.getItemCount() - 1);
  });
}

// The overlay's colour of object `label`, as the server's tiles draw it (tiler/label_render.py's palette).
const PALETTE_SIZE = 4096;
const GOLDEN = 0.618033988749895;
export function labelColor(label) {
  const n = ((Number(label) % PALETTE_SIZE) + PALETTE_SIZE) % PALETTE_SIZE;
  const hue = (n * GOLDEN) % 1;
  const s = 0.65 + (0.35 * ((n * 7) % 3)) / 2;
  const i = Math.floor(hue * 6) % 6, f = hue * 6 - Math.floor(hue * 6);
  const p = 1 - s, q = 1 - f * s, t = 1 - (1 - f) * s;
  const rgb = [[1, t, p], [q, 1, p], [p, 1, t], [p, q, 1], [t, p, 1], [1, p, q]][i];
  return `#${rgb.map((c) => Math.round(c * 255).toString(16).padStart(2, '0')).join('')}`;
}

export function formatValue(value) {
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  if (typeof value !== 'number') return value === null || value === undefined ? '–' : String(value);
  if (Number.isInteger(value)) return value.toLocaleString();
  const magnitude = Math.abs(value);
  if (magnitude !== 0 && (magnitude >= 1e9 || magnitude < 1e-3)) return value.toExponential(3);
  return (+value.toPrecision(4)).toLocaleString(undefined, { maximumFractionDigits: 6 });
}

// Add the overlay of `labels` ({info_url, tiles_url, token}) to a started viewer; `objectAtUrl` answers what is
// under a point; `units` maps measurement names to units. Returns the overlay's controller.
export async function addLabelOverlay(state, { labels, objectAtUrl = null, units = {}, formatters = {}, hiddenColumns = new Set() }) {
  const fetchInfo = async () => {
    const response = await fetch(labels.info_url, { headers: { Accept: 'application/json' } });
    if (!response.ok) throw new Error((await response.json().catch(() => ({}))).error || `HTTP ${response.status}`);
    return response.json();
  };
  const info = await fetchInfo();
  await state.ready;
  const overlay = {
    info, visible: true, opacity: 0.6, outline: false, token: info.token || labels.token || '',
    tilesLoaded: 0, tilesFailed: 0, lookups: 0, listeners: [], units, formatters, hiddenColumns,
  };
  state.overlay = overlay;
  setInterval(() => fetchInfo().then((fresh) => { if (fresh.token) overlay.token = fresh.token; }).catch(() => {}),
              TOKEN_REFRESH_MS);

  const query = (plane) => {
    const params = new URLSearchParams();
    if (state.info.ndim === 3) {
      params.set('plane', plane);
      params.set('slice', String(state.slice[plane]));
    }
    params.set('outline', overlay.outline ? '1' : '0');
    return params.toString();
  };
  const source = (plane) => ({
    ...tileSourceFor(info, labels.tiles_url, query, plane, { ext: 'png', token: () => overlay.token }),
    layer: 'labels',
  });
  const panes = () => [{ viewer: state.viewer, plane: state.plane },
                       ...(state.sidePanes || []).map((pane) => ({ viewer: pane.viewer, plane: pane.plane }))];

  // Replace a pane's label layer; the old one stays until the new one has drawn. A layer whose request was
  // overtaken by a newer one (or by hiding) goes as soon as it arrives.
  const latest = new WeakMap();
  const show = ({ viewer, plane }, keepView) => {
    keepLabelsOnTop(viewer);
    const generation = (latest.get(viewer) || 0) + 1;
    latest.set(viewer, generation);
    const old = layerItems(viewer);
    const drop = () => { for (const item of old) if (viewer.world.getIndexOfItem(item) >= 0) viewer.world.removeItem(item); };
    if (!overlay.visible) { drop(); return; }
    viewer.addTiledImage({
      tileSource: source(plane), opacity: overlay.opacity, index: viewer.world.getItemCount(),
      success: ({ item }) => {
        if (latest.get(viewer) !== generation) { viewer.world.removeItem(item); return; }
        item.setOpacity(overlay.opacity);
        if (!keepView || item.getFullyLoaded()) { drop(); return; }
        item.addOnceHandler('fully-loaded-change', drop);
        setTimeout(drop, DROP_OLD_AFTER_MS);
      },
    });
  };
  const refresh = ({ planes = null, keepView = true } = {}) => {
    for (const pane of panes()) if (planes === null || planes.includes(pane.plane)) show(pane, keepView);
    for (const listener of overlay.listeners) listener(overlay);
  };
  state.onChange(({ planes, keepView, displayOnly }) => { if (!displayOnly) refresh({ planes, keepView }); });
  for (const pane of panes()) {
    pane.viewer.addHandler('tile-loaded', ({ tiledImage }) => { if (tiledImage.source.layer === 'labels') overlay.tilesLoaded += 1; });
    pane.viewer.addHandler('tile-load-failed', ({ tiledImage }) => { if (tiledImage.source.layer === 'labels') overlay.tilesFailed += 1; });
  }

  overlay.setVisible = (visible) => { overlay.visible = visible; refresh(); };
  overlay.toggle = () => overlay.setVisible(!overlay.visible);
  // fill and outlines keep an opacity each: thin outlines want to be opaque, fills to let the image through
  const opacities = { fill: overlay.opacity, outline: OUTLINE_OPACITY };
  overlay.setOutline = (outline) => {
    overlay.outline = outline;
    overlay.opacity = opacities[outline ? 'outline' : 'fill'];
    refresh();
  };
  overlay.setOpacity = (opacity) => {
    overlay.opacity = opacities[overlay.outline ? 'outline' : 'fill'] = opacity;
    for (const { viewer } of panes()) for (const item of layerItems(viewer)) item.setOpacity(opacity);
  };
  overlay.onChange = (listener) => overlay.listeners.push(listener);
  document.addEventListener('keydown', (event) => {
    const typing = event.target.closest('textarea, select, input:not([type=checkbox]):not([type=radio]):not([type=range])');
    if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === 'l') overlay.toggle();
  });
  refresh();
  if (objectAtUrl) addObjectLookup(state, overlay, objectAtUrl);
  return overlay;
}

// The object card: what the pointer is over, looked up at most LOOKUP_INTERVAL_MS apart, cached by position.
function addObjectLookup(state, overlay, objectAtUrl) {
  const element = state.element;
  const card = document.createElement('div');
  card.className = 'object-card';
  card.hidden = true;
  card.setAttribute('role', 'status');
  element.appendChild(card);
  const cache = new Map();
  let latest = null, inFlight = false, lastSent = 0, timer = null, shownKey = null;

  const place = (anchor) => {
    const box = element.getBoundingClientRect();
    const width = card.offsetWidth, height = card.offsetHeight;
    let left = anchor.x + 16, top = anchor.y + 16;
    if (left + width > box.width - 8) left = Math.max(8, anchor.x - width - 16);
    if (top + height > box.height - 8) top = Math.max(8, anchor.y - height - 16);
    card.style.left = `${left}px`;
    card.style.top = `${top}px`;
  };
  const render = (body, anchor) => {
    if (!body || !body.label) { card.hidden = true; shownKey = null; return; }
    if (shownKey !== body.label) {
      shownKey = body.label;
      card.innerHTML = '<strong class="object-title"><span class="swatch"></span><span></span></strong><dl class="object-facts"></dl>';
      card.querySelector('.object-title span:last-child').textContent = `Object ${body.label}`;
      card.querySelector('.swatch').style.background = labelColor(body.label);
      const list = card.querySelector('dl');
      const entries = Object.entries(body.object || {}).sort(([a], [b]) => cardRank(a) - cardRank(b));
      for (const [name, value] of entries) {
        if (HIDDEN_COLUMNS.test(name) || overlay.hiddenColumns?.has(name)) continue;
        const pair = document.createElement('div');
        const dt = document.createElement('dt');
        dt.textContent = name.replace(/_/g, ' ');
        const dd = document.createElement('dd');
        const unit = overlay.units[name];
        dd.textContent = (overlay.formatters?.[name] || formatValue)(value) + (unit ? ` ${unit}` : '');
        pair.append(dt, dd);
        list.append(pair);
      }
    }
    card.hidden = false;
    // a finger: along the top or bottom edge, away from the object it tapped
    card.classList.toggle('docked', Boolean(anchor.touch));
    card.classList.toggle('docked-top', Boolean(anchor.touch) && anchor.y > element.clientHeight / 2);
    if (!anchor.touch) place(anchor);
  };
  const pump = () => {
    if (!latest || inFlight || timer) return;
    const wait = lastSent + LOOKUP_INTERVAL_MS - performance.now();
    if (wait > 0) { timer = setTimeout(() => { timer = null; pump(); }, wait); return; }
    const { voxel, anchor } = latest;
    latest = null;
    const key = `${voxel.x},${voxel.y},${voxel.z}`;
    inFlight = true;
    lastSent = performance.now();
    overlay.lookups += 1;
    const params = new URLSearchParams({ x: voxel.x, y: voxel.y, z: voxel.z });
    fetch(`${objectAtUrl}?${params}`, { headers: { Accept: 'application/json' } })
      .then((response) => (response.ok ? response.json() : null))
      .then((body) => {
        if (!body) return;
        cache.set(key, body);
        if (cache.size > LOOKUP_CACHE_SIZE) cache.delete(cache.keys().next().value);
        if (!latest && overlay.visible) render(body, anchor);
      })
      .catch(() => {})
      .finally(() => { inFlight = false; pump(); });
  };
  const lookUp = (clientX, clientY, touch = false) => {
    if (!overlay.visible || state.painting) return;
    const box = element.getBoundingClientRect();
    const anchor = { x: clientX - box.left, y: clientY - box.top, touch };
    const item = imageItem(state.viewer);
    if (!item) return;
    const point = item.viewportToImageCoordinates(state.viewer.viewport.pointFromPixel(new OpenSeadragon.Point(anchor.x, anchor.y), true));
    const { width, height } = planeSize(state.info, state.plane);
    if (point.x < 0 || point.y < 0 || point.x >= width || point.y >= height) { render(null); latest = null; return; }
    const voxel = voxelAt(state, state.plane, point.x, point.y);
    const key = `${voxel.x},${voxel.y},${voxel.z}`;
    if (cache.has(key)) { latest = null; render(cache.get(key), anchor); return; }
    latest = { voxel, anchor };
    pump();
  };
  overlay.lookUp = lookUp;
  element.addEventListener('pointermove', (event) => {
    if (event.pointerType === 'mouse' && event.buttons === 0) lookUp(event.clientX, event.clientY);
  });
  element.addEventListener('pointerleave', (event) => { if (event.pointerType === 'mouse') { latest = null; render(null); } });
  state.viewer.addHandler('canvas-click', (event) => {
    if (!event.quick || event.originalEvent.pointerType === 'mouse') return;
    const box = element.getBoundingClientRect();
    lookUp(box.left + event.position.x, box.top + event.position.y, true);
  });
  state.viewer.addHandler('canvas-drag', () => { if (!card.hidden) render(null); });
  overlay.onChange(() => { if (!overlay.visible) render(null); });
}

// The overlay's controls: shown or not, opacity, fill or outlines.
export function overlayControls(overlay) {
  const group = document.createElement('div');
  group.className = 'overlay-controls';
  group.setAttribute('role', 'group');
  group.setAttribute('aria-label', 'Label overlay');
  group.innerHTML = `
    <label class="inline" title="Show or hide the labels (l)"><input type="checkbox" class="overlay-on"> Labels</label>
    <label class="inline opacity" title="Opacity of the labels"><span class="opacity-word">opacity</span><span class="opacity-icon" aria-hidden="true">◑</span>
      <input type="range" class="overlay-opacity" min="0.1" max="1" step="0.05" aria-label="Label opacity"></label>
    <div class="segmented" role="group" aria-label="Draw labels as">
      <button type="button" data-mode="fill">Fill</button><button type="button" data-mode="outline">Outlines</button>
    </div>`;
  const on = group.querySelector('.overlay-on'), opacity = group.querySelector('.overlay-opacity');
  const sync = () => {
    on.checked = overlay.visible;
    opacity.value = String(overlay.opacity);
    for (const button of group.querySelectorAll('[data-mode]')) {
      button.setAttribute('aria-pressed', String((button.dataset.mode === 'outline') === overlay.outline));
    }
  };
  on.addEventListener('change', () => overlay.setVisible(on.checked));
  opacity.addEventListener('input', () => overlay.setOpacity(+opacity.value));
  for (const button of group.querySelectorAll('[data-mode]')) {
    button.addEventListener('click', () => overlay.setOutline(button.dataset.mode === 'outline'));
  }
  overlay.onChange(sync);
  sync();
  return group;
}

// Units of the measurement columns (tiler/segmentation/measure.py: lengths in the image's unit, area and volume
// squared and cubed, boxes in voxels), from a result's summary.
const UNIT_SYMBOLS = { micrometer: 'µm', nanometer: 'nm', millimeter: 'mm', centimeter: 'cm', meter: 'm', angstrom: 'Å' };
export const unitSymbol = (unit) => UNIT_SYMBOLS[unit] ?? unit ?? '';
export function columnUnits(summary = {}) {
  const unit = unitSymbol(summary.unit || '') || 'px';
  const units = { area: `${unit}²`, volume: `${unit}³`, equivalent_diameter: unit };
  for (const axis of 'xyz') {
    units[`centroid_${axis}`] = unit;
    units[`bbox_${axis}0`] = units[`bbox_${axis}1`] = 'px';
  }
  return units;
}

// The viewer page with ?result=<id>: that result's labels over the image, controls in a panel.
async function overlayOnViewerPage(state, resultId) {
  const panel = document.getElementById('overlay-panel');
  const response = await fetch(`/api/v1/results/${encodeURIComponent(resultId)}`, { headers: { Accept: 'application/json' } });
  if (!response.ok || !panel) return;
  const result = await response.json();
  if (result.dataset?.id !== state.element.dataset.dataset) return;  // another image's labels
  const overlay = await addLabelOverlay(state, { labels: result.labels, objectAtUrl: result.object_at_url,
                                                 units: columnUnits(result.summary),
                                                 hiddenColumns: new Set(result.method === 'classifier' ? [] : ['class']) });
  const title = panel.querySelector('.overlay-title');
  title.textContent = `${result.method} · ${new Date(result.created_at).toLocaleDateString()}`;
  title.href = `/results/${encodeURIComponent(result.id)}`;
  panel.querySelector('.overlay-body').appendChild(overlayControls(overlay));
  const button = document.getElementById('show-overlay');
  button.hidden = false;
  button.addEventListener('click', () => { panel.hidden = !panel.hidden; });
}

const resultParam = new URLSearchParams(window.location.search).get('result');
if (resultParam && window.tilescopeStarted) {
  window.tilescopeStarted.then((state) => overlayOnViewerPage(state, resultParam)).catch(() => {});
}
