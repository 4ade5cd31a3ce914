// The image viewer: OpenSeadragon over the native tile endpoint; planes and slices of volumes, channels,
// scale bar, view state in the URL, export.
import { addScaleBar } from './scalebar.js';
import { applyLayerState, applyPosition, keepViewStateInUrl, readViewState } from './viewstate.js';
import { exportUrl } from './export.js';
import { buildChannelPanel, defaultDisplay, displayQuery } from './channels.js';
import { setUpOrtho, swapTiledImage, wantsOrtho } from './ortho.js';

const element = document.getElementById('viewer');
const statusLine = document.getElementById('viewer-status');
const state = { tilesLoaded: 0, tilesFailed: 0, viewer: null, info: null, token: '', plane: 'xy', slice: {}, display: null };
window.tilescope = state;
const TOKEN_REFRESH_MS = 10 * 60 * 1000;  // the server's viewer tokens last 15 minutes
const RELOAD_DEBOUNCE_MS = 120;

// Size of the image OpenSeadragon shows for a plane (volumes: stretched to physical proportions by the server).
export function planeSize(info, plane) {
  const [height, width] = info.plane_sizes ? info.plane_sizes[plane] : [info.height, info.width];
  return { width, height };
}

export function tileSourceFor(info, base, query, plane = state.plane) {
  const { width, height } = planeSize(info, plane);
  const levels = info.levels.length;
  const maxLevel = Math.ceil(Math.log2(Math.max(width, height, 2)));
  const extra = query(plane);
  return {
    width, height, tileSize: info.tile_size, tileOverlap: 0,
    minLevel: Math.max(0, maxLevel - (levels - 1)), maxLevel,
    // OpenSeadragon counts levels up from 1×1; the pyramid counts down from full resolution.
    getTileUrl: (level, x, y) => `${base}/${maxLevel - level}/${y}/${x}.jpg?v=${info.version}&t=${state.token}&${extra}`,
  };
}

function tileQuery(plane = state.plane) {
  const params = new URLSearchParams(displayQuery(state.display, state.info));
  if (state.info.ndim === 3) {
    params.set('plane', plane);
    params.set('slice', String(state.slice[plane]));
  }
  return params.toString();
}

function showProgress() {
  const pending = state.viewer.imageLoader.jobsInProgress;
  const { width, height } = planeSize(state.info, state.plane);
  statusLine.textContent = pending > 0 ? `loading ${pending} tile${pending === 1 ? '' : 's'}…`
    : `${width.toLocaleString()} × ${height.toLocaleString()} px`;
  if (state.info.ndim === 3) statusLine.textContent += ` · ${state.plane} ${state.slice[state.plane] + 1}/${sliceCount(state.plane)}`;
  if (state.tilesFailed) statusLine.textContent += ` · ${state.tilesFailed} failed`;
}

function sliceCount(plane) {
  const [depth, height, width] = state.info.levels[0];
  return { xy: depth, xz: height, yz: width }[plane];
}

// Show the new plane/slice/display: `planes` lists the planes whose slice changed (null: everything changed).
let reloadTimer = null;
let saveViewState = () => {};
let updateOrtho = () => {};
function reload({ keepView = true, planes = null } = {}) {
  clearTimeout(reloadTimer);
  saveViewState();
  reloadTimer = setTimeout(() => {
    if (planes === null || planes.includes(state.plane)) {
      swapTiledImage(state.viewer, tileSourceFor(state.info, element.dataset.tiles, tileQuery), keepView);
    }
    updateOrtho({ planes, keepView });
  }, RELOAD_DEBOUNCE_MS);
}

function makeViewer(container, tileSource, options = {}) {
  return OpenSeadragon({
    element: container,
    prefixUrl: element.dataset.prefix,
    tileSources: tileSource,
    showRotationControl: false,
    gestureSettingsMouse: { clickToZoom: state.info.ndim !== 3 },
    gestureSettingsTouch: { pinchRotate: false, flickEnabled: true, clickToZoom: false },
    maxZoomPixelRatio: 4,
    visibilityRatio: 0.5,
    timeout: 60000,
    ...options,
  });
}

function bindVolumeControls(info, params) {
  const controls = document.getElementById('volume-controls');
  if (info.ndim === 3) for (const plane of ['xy', 'xz', 'yz']) state.slice[plane] = Math.floor(sliceCount(plane) / 2);
  applyLayerState(params, state);
  if (info.ndim !== 3) return;
  state.slice[state.plane] = Math.min(state.slice[state.plane], sliceCount(state.plane) - 1);
  controls.hidden = false;
  const slider = document.getElementById('slice');
  for (const b of controls.querySelectorAll('[data-plane]')) b.setAttribute('aria-pressed', String(b.dataset.plane === state.plane));
  const syncSlider = () => {
    slider.max = String(sliceCount(state.plane) - 1);
    slider.value = String(state.slice[state.plane]);
    document.getElementById('slice-out').textContent = `${state.slice[state.plane] + 1} / ${sliceCount(state.plane)}`;
  };
  slider.addEventListener('input', () => { state.slice[state.plane] = +slider.value; syncSlider(); reload({ planes: [state.plane] }); });
  state.syncSlider = syncSlider;
  for (const button of controls.querySelectorAll('[data-plane]')) {
    button.addEventListener('click', () => {
      state.plane = button.dataset.plane;
      for (const b of controls.querySelectorAll('[data-plane]')) b.setAttribute('aria-pressed', String(b === button));
      syncSlider();
      reload({ keepView: false });
    });
  }
  document.addEventListener('keydown', (event) => {
    if (event.target.closest('input, textarea')) return;
    const step = { PageUp: 1, PageDown: -1, '.': 1, ',': -1 }[event.key];
    if (!step) return;
    state.slice[state.plane] = Math.min(sliceCount(state.plane) - 1, Math.max(0, state.slice[state.plane] + step));
    syncSlider();
    reload({ planes: [state.plane] });
  });
  syncSlider();
}

function bindToolbar(viewer, info) {
  document.getElementById('download-view').addEventListener('click', () => {
    const url = exportUrl(viewer, info, element.dataset.iiif);
    if (!url) return;
    const link = document.createElement('a');
    link.href = url;
    link.download = `${element.dataset.name}-view.png`;
    document.body.appendChild(link);
    link.click();
    link.remove();
  });
  const help = document.getElementById('shortcuts');
  const panel = document.getElementById('channel-panel');
  document.getElementById('show-shortcuts').addEventListener('click', () => { help.hidden = !help.hidden; });
  document.getElementById('show-channels').addEventListener('click', () => { panel.hidden = !panel.hidden; });
  document.addEventListener('keydown', (event) => {
    if (event.target.closest('input, textarea')) return;
    if (event.key === '?') help.hidden = !help.hidden;
    if (event.key === 'c') panel.hidden = !panel.hidden;
    if (event.key === 'Escape') { help.hidden = true; panel.hidden = true; }
  });
}

async function fetchInfo() {
  const response = await fetch(element.dataset.info, { headers: { Accept: 'application/json' } });
  if (!response.ok) throw new Error((await response.json()).error || response.status);
  const info = await response.json();
  state.token = info.token;
  return info;
}

async function start() {
  let info;
  try {
    info = await fetchInfo();
  } catch (error) {
    statusLine.textContent = `Cannot open this image: ${error.message}`;
    return;
  }
  state.info = info;
  state.display = defaultDisplay(info);
  setInterval(() => fetchInfo().catch(() => {}), TOKEN_REFRESH_MS);
  const saved = readViewState();
  bindVolumeControls(info, saved.params);
  state.sliceCount = sliceCount;
  const viewer = makeViewer(element, tileSourceFor(info, element.dataset.tiles, tileQuery),
                            { showNavigator: window.innerWidth > 600 && !wantsOrtho(info), navigatorPosition: 'TOP_RIGHT' });
  state.viewer = viewer;
  if (wantsOrtho(info)) {
    updateOrtho = setUpOrtho({
      state, mainViewer: viewer, container: document.getElementById('ortho'),
      makeViewer: (container, source) => makeViewer(container, source, { showNavigationControl: false }),
      tileSourceFor: (plane) => tileSourceFor(info, element.dataset.tiles, tileQuery, plane),
      sizes: (plane) => planeSize(info, plane),
      onSlicesChanged: (planes) => { state.syncSlider(); reload({ planes }); },
    });
  }
  viewer.addHandler('tile-loaded', () => { state.tilesLoaded += 1; showProgress(); });
  viewer.addHandler('tile-load-failed', () => { state.tilesFailed += 1; showProgress(); });
  viewer.addHandler('update-viewport', showProgress);
  viewer.addOnceHandler('open', () => {
    if (saved.position) applyPosition(viewer, saved.position);
    saveViewState = keepViewStateInUrl(viewer, tileQuery);
  });
  addScaleBar(viewer, element, info);
  bindToolbar(viewer, info);
  const histograms = await (await fetch(element.dataset.histogram + `?t=${state.token}`)).json();
  buildChannelPanel(document.getElementById('channel-list'), info, histograms.channels, state.display, () => reload());
}

start();
