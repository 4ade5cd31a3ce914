// The image viewer: OpenSeadragon over the native tile endpoint, scale bar, view state in the URL, export.
import { addScaleBar } from './scalebar.js';
import { applyViewState, keepViewStateInUrl, readViewState } from './viewstate.js';
import { exportUrl } from './export.js';

const element = document.getElementById('viewer');
const statusLine = document.getElementById('viewer-status');
const state = { tilesLoaded: 0, tilesFailed: 0, viewer: null, info: null, token: '' };
const TOKEN_REFRESH_MS = 10 * 60 * 1000;  // the server's viewer tokens last 15 minutes
window.tilescope = state;

export function tileSourceFor(info, base) {
  const levels = info.levels.length;
  const maxLevel = Math.ceil(Math.log2(Math.max(info.width, info.height, 2)));
  return {
    width: info.width, height: info.height, tileSize: info.tile_size, tileOverlap: 0,
    minLevel: Math.max(0, maxLevel - (levels - 1)), maxLevel,
    // OpenSeadragon counts levels up from 1×1; the pyramid counts down from full resolution.
    getTileUrl: (level, x, y) => `${base}/${maxLevel - level}/${y}/${x}.jpg?v=${info.version}&t=${state.token}`,
  };
}

function showProgress() {
  const pending = state.viewer.imageLoader.jobsInProgress;
  statusLine.textContent = pending > 0 ? `loading ${pending} tile${pending === 1 ? '' : 's'}…`
    : `${state.info.width.toLocaleString()} × ${state.info.height.toLocaleString()} px`;
  if (state.tilesFailed) statusLine.textContent += ` · ${state.tilesFailed} failed`;
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
  document.getElementById('show-shortcuts').addEventListener('click', () => { help.hidden = !help.hidden; });
  document.addEventListener('keydown', (event) => {
    if (event.target.closest('input, textarea')) return;
    if (event.key === '?') help.hidden = !help.hidden;
    if (event.key === 'Escape') help.hidden = true;
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
  setInterval(() => fetchInfo().catch(() => {}), TOKEN_REFRESH_MS);
  const viewer = OpenSeadragon({
    element,
    prefixUrl: element.dataset.prefix,
    tileSources: tileSourceFor(info, element.dataset.tiles),
    showNavigator: window.innerWidth > 600,
    navigatorPosition: 'TOP_RIGHT',
    showRotationControl: false,
    gestureSettingsTouch: { pinchRotate: false, flickEnabled: true },
    maxZoomPixelRatio: 4,
    visibilityRatio: 0.5,
    timeout: 60000,
  });
  state.viewer = viewer;
  viewer.addHandler('tile-loaded', () => { state.tilesLoaded += 1; showProgress(); });
  viewer.addHandler('tile-load-failed', () => { state.tilesFailed += 1; showProgress(); });
  viewer.addHandler('update-viewport', showProgress);
  viewer.addHandler('open', () => {
    const saved = readViewState();
    if (saved) applyViewState(viewer, saved);
    keepViewStateInUrl(viewer);
  });
  addScaleBar(viewer, element, info);
  bindToolbar(viewer, info);
}

start();
