// The view lives in the URL hash — centre and zoom in image pixels, plane, slice and display settings —
// so a link reproduces exactly what you see.
const DEBOUNCE_MS = 250;

export function readViewState() {
  const params = new URLSearchParams(window.location.hash.slice(1));
  const x = parseFloat(params.get('x')), y = parseFloat(params.get('y')), zoom = parseFloat(params.get('zoom'));
  const position = Number.isFinite(x) && Number.isFinite(y) && Number.isFinite(zoom) && zoom > 0 ? { x, y, zoom } : null;
  return { position, params };
}

// Apply plane, slice and display settings from the hash to the viewer state (before any tile is requested).
export function applyLayerState(params, state) {
  const plane = params.get('plane');
  if (state.info.ndim === 3 && ['xy', 'xz', 'yz'].includes(plane)) state.plane = plane;
  const slice = parseInt(params.get('slice'), 10);
  if (state.info.ndim === 3 && Number.isInteger(slice) && slice >= 0) state.slice[state.plane] = slice;
  const display = state.display;
  if (params.has('c')) {
    const on = new Set(params.get('c').split(',').filter(Boolean).map(Number));
    display.on = display.on.map((_, i) => on.has(i));
  }
  const windows = (params.get('w') || '').split(',');
  windows.forEach((item, i) => {
    const [a, b] = item.split(':').map(Number);
    if (i < display.windows.length && Number.isFinite(a) && Number.isFinite(b) && b > a) display.windows[i] = [a, b];
  });
  (params.get('color') || '').split(',').forEach((color, i) => {
    if (i < display.colors.length && /^[0-9A-Fa-f]{6}$/.test(color)) display.colors[i] = color.toUpperCase();
  });
  const gamma = parseFloat(params.get('gamma'));
  if (Number.isFinite(gamma) && gamma > 0) display.gamma = gamma;
  display.invert = params.get('invert') === '1';
}

export function applyPosition(viewer, position) {
  const viewport = viewer.viewport;
  viewport.panTo(viewport.imageToViewportCoordinates(position.x, position.y), true);
  viewport.zoomTo(viewport.imageToViewportZoom(position.zoom), null, true);
}

function currentPosition(viewer) {
  const viewport = viewer.viewport;
  const centre = viewport.viewportToImageCoordinates(viewport.getCenter(true));
  return { x: Math.round(centre.x), y: Math.round(centre.y), zoom: +viewport.viewportToImageZoom(viewport.getZoom(true)).toPrecision(4) };
}

// Keep the hash current: call the returned function whenever plane, slice or display change.
export function keepViewStateInUrl(viewer, layerQuery) {
  let timer = null;
  const write = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      const { x, y, zoom } = currentPosition(viewer);
      history.replaceState(null, '', `#x=${x}&y=${y}&zoom=${zoom}&${layerQuery()}`);
    }, DEBOUNCE_MS);
  };
  viewer.addHandler('animation-finish', write);
  return write;
}
