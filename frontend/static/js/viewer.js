// The image viewer: OpenSeadragon over the native tile endpoint, with a scale bar and loading feedback.
const element = document.getElementById('viewer');
const statusLine = document.getElementById('viewer-status');
const state = { tilesLoaded: 0, tilesFailed: 0, viewer: null, info: null };
window.tilescope = state;

const NICE_STEPS = [1, 2, 5];
const UNIT_SYMBOLS = { micrometer: 'µm', nanometer: 'nm', millimeter: 'mm', centimeter: 'cm', meter: 'm' };

function tileSourceFor(info, base) {
  const levels = info.levels.length;
  const maxLevel = Math.ceil(Math.log2(Math.max(info.width, info.height)));
  return {
    width: info.width, height: info.height, tileSize: info.tile_size, tileOverlap: 0,
    minLevel: Math.max(0, maxLevel - (levels - 1)), maxLevel,
    // OpenSeadragon counts levels up from 1×1; the pyramid counts down from full resolution.
    getTileUrl: (level, x, y) => `${base}/${maxLevel - level}/${y}/${x}.jpg?v=${info.version}`,
  };
}

function niceLength(maxValue) {
  const exponent = Math.floor(Math.log10(maxValue));
  let best = Math.pow(10, exponent);
  for (const step of NICE_STEPS) {
    const candidate = step * Math.pow(10, exponent);
    if (candidate <= maxValue) best = candidate;
  }
  return best;
}

function addScaleBar(viewer, info) {
  const bar = document.createElement('div');
  bar.className = 'scalebar';
  bar.innerHTML = '<div class="label"></div><div class="bar"></div>';
  element.appendChild(bar);
  const pixelSize = info.pixel_size ? info.pixel_size[1] : 1;
  const unit = info.pixel_size ? (UNIT_SYMBOLS[info.unit] || info.unit || '') : 'px';
  const update = () => {
    const screenPerImagePixel = viewer.viewport.viewportToImageZoom(viewer.viewport.getZoom(true));
    const maxPhysical = (120 / screenPerImagePixel) * pixelSize;
    const length = niceLength(maxPhysical);
    bar.querySelector('.bar').style.width = `${(length / pixelSize) * screenPerImagePixel}px`;
    bar.querySelector('.label').textContent = `${length.toLocaleString()} ${unit}`;
  };
  viewer.addHandler('animation', update);
  viewer.addHandler('open', update);
  viewer.addHandler('resize', update);
}

function showProgress() {
  const pending = state.viewer.imageLoader.jobsInProgress;
  statusLine.textContent = pending > 0 ? `loading ${pending} tile${pending === 1 ? '' : 's'}…`
    : `${state.info.width.toLocaleString()} × ${state.info.height.toLocaleString()} px`;
  if (state.tilesFailed) statusLine.textContent += ` · ${state.tilesFailed} failed`;
}

async function start() {
  const response = await fetch(element.dataset.info, { headers: { Accept: 'application/json' } });
  if (!response.ok) {
    statusLine.textContent = `Cannot open this image: ${(await response.json()).error || response.status}`;
    return;
  }
  const info = await response.json();
  state.info = info;
  const viewer = OpenSeadragon({
    element,
    prefixUrl: element.dataset.prefix,
    tileSources: tileSourceFor(info, element.dataset.tiles),
    showNavigator: window.innerWidth > 600,
    navigatorPosition: 'TOP_RIGHT',
    showRotationControl: false,
    gestureSettingsTouch: { pinchRotate: false, flickEnabled: true },
    immediateRender: false,
    maxZoomPixelRatio: 4,
    visibilityRatio: 0.5,
    timeout: 60000,
  });
  state.viewer = viewer;
  viewer.addHandler('tile-loaded', () => { state.tilesLoaded += 1; showProgress(); });
  viewer.addHandler('tile-load-failed', () => { state.tilesFailed += 1; showProgress(); });
  viewer.addHandler('update-viewport', showProgress);
  addScaleBar(viewer, info);
}

start();
