// The image viewer: OpenSeadragon over the native tile endpoint; planes and slices of volumes, channels,
// scale bar, view state in the URL, export. `startViewer(element, options)` starts one on any element
// (the viewer page, a result page); the viewer page's element carries its URLs as data attributes.
import { addScaleBar } from './scalebar.js';
import { applyLayerState, applyPosition, keepViewStateInUrl, readViewState } from './viewstate.js';
import { exportUrl } from './export.js';
import { buildChannelPanel, defaultDisplay, displayQuery } from './channels.js';
import { setUpOrtho, swapTiledImage, wantsOrtho } from './ortho.js';

const TOKEN_REFRESH_MS = 10 * 60 * 1000;  // the server's viewer tokens last 15 minutes
const RELOAD_DEBOUNCE_MS = 120;

// Size of the image OpenSeadragon shows for a plane (volumes: stretched to physical proportions by the server).
export function planeSize(info, plane) {
  const [height, width] = info.plane_sizes ? info.plane_sizes[plane] : [info.height, info.width];
  return { width, height };
}

// Level-0 slices along a plane's normal: xy slices are z, xz slices are y, yz slices are x.
export function sliceCountOf(info, plane) {
  const [depth, height, width] = info.levels[0];
  return { xy: depth, xz: height, yz: width }[plane];
}

// An OpenSeadragon tile source over a native tile endpoint; `token()` is read per request, so refreshed
// tokens apply to tiles fetched later.
export function tileSourceFor(info, base, query, plane, { ext = 'jpg', token = () => '' } = {}) {
  const { width, height } = planeSize(info, plane);
  const levels = info.levels.length;
  const maxLevel = Math.ceil(Math.log2(Math.max(width, height, 2)));
  const extra = query(plane);
  return {
    width, height, tileSize: info.tile_size, tileOverlap: 0,
    minLevel: Math.max(0, maxLevel - (levels - 1)), maxLevel,
    // OpenSeadragon counts levels up from 1×1; the pyramid counts down from full resolution.
    getTileUrl: (level, x, y) => `${base}/${maxLevel - level}/${y}/${x}.${ext}?v=${info.version}&t=${token()}&${extra}`,
  };
}

// The level-0 voxel (x, y, z) under view-image point (u, v) of a plane; 2D images have z = 0.
export function voxelAt(state, plane, u, v) {
  const info = state.info;
  if (info.ndim !== 3) return { x: Math.floor(u), y: Math.floor(v), z: 0 };
  const [depth, height, width] = info.levels[0];
  const { width: pw, height: ph } = planeSize(info, plane);
  const along = (value, size, count) => Math.floor((value / size) * count);
  if (plane === 'xy') return { x: Math.floor(u), y: Math.floor(v), z: state.slice.xy };
  if (plane === 'xz') return { x: along(u, pw, width), y: state.slice.xz, z: along(v, ph, depth) };
  return { x: state.slice.yz, y: along(u, pw, height), z: along(v, ph, depth) };
}

// The topmost image item of a viewer (any item will do for coordinates: all cover the same rectangle).
export const imageItem = (viewer) => viewer.world.getItemAt(0);

// Start a viewer on `element`. Options (defaults from the element's data attributes): info, tiles,
// histogram, iiif (URLs), name, prefix (OpenSeadragon images), token (a viewer token to start with),
// urlState (keep the view in the address bar), ortho (linked panes for volumes on wide screens), and
// `root`, the element holding the viewer's controls (toolbar, panels, status line), found by id.
export async function startViewer(element, options = {}) {
  const data = element.dataset;
  const opts = {
    info: data.info, tiles: data.tiles, histogram: data.histogram, iiif: data.iiif, name: data.name || 'view',
    prefix: data.prefix, token: '', urlState: true, ortho: true, root: document, ...options,
  };
  const find = (id) => opts.root.querySelector(`#${id}`);
  const statusLine = find('viewer-status') || document.createElement('div');
  const state = {
    tilesLoaded: 0, tilesFailed: 0, viewer: null, info: null, token: opts.token || '', plane: 'xy', slice: {},
    display: null, element, listeners: [], ready: null,
  };
  window.tilescope = state;
  const tileQuery = (plane = state.plane) => {
    const params = new URLSearchParams(displayQuery(state.display, state.info));
    if (state.info.ndim === 3) {
      params.set('plane', plane);
      params.set('slice', String(state.slice[plane]));
    }
    return params.toString();
  };
  const imageSource = (plane = state.plane) => tileSourceFor(state.info, opts.tiles, tileQuery, plane,
                                                             { token: () => state.token });
  const sliceCount = (plane) => sliceCountOf(state.info, plane);

  const showProgress = () => {
    const pending = state.viewer.imageLoader.jobsInProgress;
    const { width, height } = planeSize(state.info, state.plane);
    statusLine.textContent = pending > 0 ? `loading ${pending} tile${pending === 1 ? '' : 's'}…`
      : `${width.toLocaleString()} × ${height.toLocaleString()} px`;
    if (state.info.ndim === 3) statusLine.textContent += ` · ${state.plane} ${state.slice[state.plane] + 1}/${sliceCount(state.plane)}`;
    if (state.tilesFailed) statusLine.textContent += ` · ${state.tilesFailed} failed`;
  };

  // Show the new plane/slice/display: `planes` lists the planes whose slice changed (null: everything changed).
  // `displayOnly`: only the display settings changed. Listeners (overlays, scribbles) hear of every change
  // after the image's own.
  let reloadTimer = null;
  let saveViewState = () => {};
  let updateOrtho = () => {};
  const reload = ({ keepView = true, planes = null, displayOnly = false } = {}) => {
    clearTimeout(reloadTimer);
    saveViewState();
    reloadTimer = setTimeout(() => {
      if (planes === null || planes.includes(state.plane)) {
        swapTiledImage(state.viewer, imageSource(), keepView);
      }
      updateOrtho({ planes, keepView });
      for (const listener of state.listeners) listener({ keepView, planes, displayOnly });
    }, RELOAD_DEBOUNCE_MS);
  };
  state.reload = reload;
  state.onChange = (listener) => state.listeners.push(listener);

  const makeViewer = (container, tileSource, extra = {}) => OpenSeadragon({
    element: container,
    prefixUrl: opts.prefix,
    tileSources: tileSource,
    showRotationControl: false,
    gestureSettingsMouse: { clickToZoom: state.info.ndim !== 3 },
    gestureSettingsTouch: { pinchRotate: false, flickEnabled: true, clickToZoom: false },
    maxZoomPixelRatio: 4,
    visibilityRatio: 0.5,
    timeout: 60000,
    silenceMultiImageWarnings: true,  // overlays cover exactly the image: the first item's coordinates hold for all
    // overlay tiles are RGBA: premultiply on upload, else transparent pixels tint the image with their colour
    drawerOptions: { webgl: { unpackWithPremultipliedAlpha: true } },
    ...extra,
  });

  const bindVolumeControls = (params) => {
    const controls = find('volume-controls');
    if (state.info.ndim === 3) for (const plane of ['xy', 'xz', 'yz']) state.slice[plane] = Math.floor(sliceCount(plane) / 2);
    applyLayerState(params, state);
    state.syncSlider = () => {};
    if (state.info.ndim !== 3 || !controls) return;
    state.slice[state.plane] = Math.min(state.slice[state.plane], sliceCount(state.plane) - 1);
    controls.hidden = false;
    const slider = find('slice');
    const buttons = controls.querySelectorAll('[data-plane]');
    const syncSlider = () => {
      for (const b of buttons) b.setAttribute('aria-pressed', String(b.dataset.plane === state.plane));
      slider.max = String(sliceCount(state.plane) - 1);
      slider.value = String(state.slice[state.plane]);
      find('slice-out').textContent = `${state.slice[state.plane] + 1} / ${sliceCount(state.plane)}`;
    };
    slider.addEventListener('input', () => { state.slice[state.plane] = +slider.value; syncSlider(); reload({ planes: [state.plane] }); });
    state.syncSlider = syncSlider;
    for (const button of buttons) {
      button.addEventListener('click', () => state.setPlane(button.dataset.plane, null, true));
    }
    document.addEventListener('keydown', (event) => {
      if (event.target.closest('input, textarea, select')) return;
      const step = { PageUp: 1, PageDown: -1, '.': 1, ',': -1 }[event.key];
      if (!step) return;
      state.slice[state.plane] = Math.min(sliceCount(state.plane) - 1, Math.max(0, state.slice[state.plane] + step));
      syncSlider();
      reload({ planes: [state.plane] });
    });
    syncSlider();
  };

  // Switch plane (volumes), optionally going to a slice; the view goes home unless it stays on the same plane.
  state.setPlane = (plane, slice = null, home = plane !== state.plane) => {
    state.plane = plane;
    if (slice !== null) state.slice[plane] = Math.min(sliceCount(plane) - 1, Math.max(0, slice));
    state.syncSlider();
    reload(home ? { keepView: false } : { planes: [plane] });
  };

  const bindToolbar = (viewer) => {
    const download = find('download-view');
    if (download) {
      download.addEventListener('click', () => {
        const url = exportUrl(viewer, state.info, opts.iiif);
        if (!url) return;
        const link = document.createElement('a');
        link.href = `${url}?t=${encodeURIComponent(state.token)}`;  // the token: share-link holders have no session
        link.download = `${opts.name}-view.png`;
        document.body.appendChild(link);
        link.click();
        link.remove();
      });
    }
    const help = find('shortcuts');
    const panel = find('channel-panel');
    const toggle = (item) => { if (item) item.hidden = !item.hidden; };
    find('show-shortcuts')?.addEventListener('click', () => toggle(help));
    find('show-channels')?.addEventListener('click', () => toggle(panel));
    document.addEventListener('keydown', (event) => {
      if (event.target.closest('input, textarea, select')) return;
      if (event.key === '?') toggle(help);
      if (event.key === 'c') toggle(panel);
      if (event.key === 'Escape') { if (help) help.hidden = true; if (panel) panel.hidden = true; }
    });
  };

  const fetchInfo = async () => {
    const response = await fetch(opts.info, { headers: { Accept: 'application/json' } });
    if (!response.ok) throw new Error((await response.json().catch(() => ({}))).error || response.status);
    const info = await response.json();
    if (info.token) state.token = info.token;
    return info;
  };

  try {
    state.info = await fetchInfo();
  } catch (error) {
    statusLine.textContent = `Cannot open this image: ${error.message}`;
    throw error;
  }
  const info = state.info;
  state.display = defaultDisplay(info);
  setInterval(() => fetchInfo().catch(() => {}), TOKEN_REFRESH_MS);
  const saved = opts.urlState ? readViewState() : { position: null, params: new URLSearchParams() };
  bindVolumeControls(saved.params);
  state.sliceCount = sliceCount;
  const ortho = opts.ortho && wantsOrtho(info);
  const viewer = makeViewer(element, imageSource(),
                            { showNavigator: element.clientWidth > 600 && !ortho, navigatorPosition: 'TOP_RIGHT' });
  state.viewer = viewer;
  const orthoContainer = find('ortho');
  if (ortho && orthoContainer) {
    updateOrtho = setUpOrtho({
      state, mainViewer: viewer, container: orthoContainer,
      makeViewer: (container, source) => makeViewer(container, source, { showNavigationControl: false }),
      tileSourceFor: (plane) => imageSource(plane),
      sizes: (plane) => planeSize(info, plane),
      onSlicesChanged: (planes) => { state.syncSlider(); reload({ planes }); },
    });
  }
  viewer.addHandler('tile-loaded', () => { state.tilesLoaded += 1; showProgress(); });
  viewer.addHandler('tile-load-failed', () => { state.tilesFailed += 1; showProgress(); });
  viewer.addHandler('update-viewport', showProgress);
  state.ready = new Promise((resolve) => {
    viewer.addOnceHandler('open', () => {
      if (saved.position) applyPosition(viewer, saved.position);
      if (opts.urlState) saveViewState = keepViewStateInUrl(viewer, tileQuery);
      resolve(state);
    });
  });
  addScaleBar(viewer, element, info);
  bindToolbar(viewer);
  const channelList = find('channel-list');
  if (channelList && opts.histogram) {
    fetch(opts.histogram + `?t=${state.token}`).then((r) => r.json()).then((histograms) => {
      buildChannelPanel(channelList, info, histograms.channels, state.display, () => reload({ displayOnly: true }));
    }).catch(() => {});
  }
  return state;
}

// Fit the view to a level-0 box (x0, y0, x1, y1 half-open; z for volumes: that xy slice, and the linked panes
// cross the box's centre), with a margin around it.
export function showBox(state, { x0, y0, x1, y1, z = null }, margin = 0.6) {
  const go = () => {
    const item = imageItem(state.viewer);
    if (!item) return;
    const w = Math.max(1, x1 - x0), h = Math.max(1, y1 - y0);
    const pad = Math.max(w, h, 16) * margin;
    const rect = new OpenSeadragon.Rect(x0 - pad, y0 - pad, w + 2 * pad, h + 2 * pad);
    state.viewer.viewport.fitBoundsWithConstraints(item.imageToViewportRectangle(rect));
  };
  if (state.info.ndim === 3 && z !== null) {
    const planeChanges = state.plane !== 'xy';
    const within = (value, plane) => Math.min(state.sliceCount(plane) - 1, Math.max(0, value));
    state.plane = 'xy';
    Object.assign(state.slice, { xy: within(z, 'xy'), xz: within(Math.floor((y0 + y1 - 1) / 2), 'xz'),
                                 yz: within(Math.floor((x0 + x1 - 1) / 2), 'yz') });
    state.syncSlider();
    state.reload(planeChanges ? { keepView: false } : { planes: ['xy', 'xz', 'yz'] });
    if (planeChanges) {  // once the xy image has replaced the old plane's and the view went home
      const added = ({ item }) => {
        if (item.source.layer) return;  // an overlay's item
        state.viewer.world.removeHandler('add-item', added);
        setTimeout(go, 0);
      };
      state.viewer.world.addHandler('add-item', added);
      return;
    }
  }
  go();
}

// The viewer page: its element says where everything is; page modules (overlay, analysis) wait on
// window.tilescopeStarted.
const pageElement = document.querySelector('#viewer[data-autostart]');
if (pageElement) {
  window.tilescopeStarted = startViewer(pageElement).then((state) => state.ready);
  window.tilescopeStarted.catch(() => {});
}
