// The view (centre and zoom, in image pixels) lives in the URL hash, so a link reproduces what you see.
const DEBOUNCE_MS = 250;

export function readViewState() {
  const params = new URLSearchParams(window.location.hash.slice(1));
  const x = parseFloat(params.get('x')), y = parseFloat(params.get('y')), zoom = parseFloat(params.get('zoom'));
  return Number.isFinite(x) && Number.isFinite(y) && Number.isFinite(zoom) && zoom > 0 ? { x, y, zoom } : null;
}

export function applyViewState(viewer, state) {
  const viewport = viewer.viewport;
  viewport.panTo(viewport.imageToViewportCoordinates(state.x, state.y), true);
  viewport.zoomTo(viewport.imageToViewportZoom(state.zoom), null, true);
}

export function currentViewState(viewer) {
  const viewport = viewer.viewport;
  const centre = viewport.viewportToImageCoordinates(viewport.getCenter(true));
  return { x: Math.round(centre.x), y: Math.round(centre.y), zoom: +viewport.viewportToImageZoom(viewport.getZoom(true)).toPrecision(4) };
}

export function keepViewStateInUrl(viewer) {
  let timer = null;
  viewer.addHandler('animation-finish', () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      const { x, y, zoom } = currentViewState(viewer);
      history.replaceState(null, '', `#x=${x}&y=${y}&zoom=${zoom}`);
    }, DEBOUNCE_MS);
  });
}
