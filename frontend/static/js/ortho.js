// Linked orthogonal panes for volumes on wide screens: beside the main pane, the two other planes through
// one crosshair point; a click in any pane moves the point, and every pane follows.
const WIDE_SCREEN_PX = 1100;
const OTHER_PLANES = { xy: ['xz', 'yz'], xz: ['xy', 'yz'], yz: ['xy', 'xz'] };

export const wantsOrtho = (info) => info.ndim === 3 && window.innerWidth >= WIDE_SCREEN_PX;

// Replace a viewer's image by a new tile source; the old image stays until the new one has drawn.
export function swapTiledImage(viewer, tileSource, keepView = true) {
  const old = viewer.world.getItemAt(0);
  viewer.addTiledImage({
    tileSource,
    index: viewer.world.getItemCount(),
    success: ({ item }) => {
      const drop = () => { if (old) viewer.world.removeItem(old); };
      if (!keepView) { drop(); viewer.viewport.goHome(true); return; }
      if (item.getFullyLoaded()) drop(); else item.addOnceHandler('fully-loaded-change', drop);
    },
  });
}

// Where the crosshair point (level-0 voxels x, y, z = the xz, yz and xy slices) falls in a plane's view image.
function pointInPlane(state, plane, sizes) {
  const { xy: z, xz: y, yz: x } = state.slice;
  const depth = state.info.levels[0][0];
  const stretch = (p) => sizes(p).height / depth;
  return { xy: [x, y], xz: [x, (z + 0.5) * stretch('xz')], yz: [y, (z + 0.5) * stretch('yz')] }[plane];
}

// The voxel a click at view-image point (u, v) of a plane picks: which slices it sets.
function slicesAt(state, plane, u, v, sizes) {
  const depth = state.info.levels[0][0];
  const clamp = (value, p) => Math.max(0, Math.min(state.sliceCount(p) - 1, Math.floor(value)));
  if (plane === 'xy') return { yz: clamp(u, 'yz'), xz: clamp(v, 'xz') };
  const z = clamp((v / sizes(plane).height) * depth, 'xy');
  return plane === 'xz' ? { yz: clamp(u, 'yz'), xy: z } : { xz: clamp(u, 'xz'), xy: z };
}

function addCrosshair(pane) {
  const lines = ['h', 'v'].map((kind) => {
    const line = document.createElement('div');
    line.className = `crosshair crosshair-${kind}`;
    pane.viewer.element.appendChild(line);
    return line;
  });
  pane.drawCrosshair = (u, v) => {
    const item = pane.viewer.world.getItemAt(pane.viewer.world.getItemCount() - 1);
    if (!item) return;
    const point = pane.viewer.viewport.viewportToViewerElementCoordinates(
      item.imageToViewportCoordinates(new OpenSeadragon.Point(u, v), true));
    lines[0].style.top = `${point.y}px`;
    lines[1].style.left = `${point.x}px`;
  };
}

// Build the side panes; returns update(changedPlanes) to call after any change of plane, slice or display.
export function setUpOrtho({ state, mainViewer, container, makeViewer, tileSourceFor, sizes, onSlicesChanged }) {
  container.hidden = false;
  document.body.classList.add('ortho');
  const side = [0, 1].map((i) => {
    const element = document.createElement('div');
    element.className = 'ortho-pane';
    element.innerHTML = '<span class="ortho-label"></span>';
    container.appendChild(element);
    return { element, index: i, plane: null, viewer: null };
  });
  const main = { viewer: mainViewer, get plane() { return state.plane; } };
  const panes = () => [main, ...side];
  const redraw = () => { for (const pane of panes()) if (pane.drawCrosshair) pane.drawCrosshair(...pointInPlane(state, pane.plane, sizes)); };

  const onClick = (pane) => (event) => {
    if (!event.quick) return;
    event.preventDefaultAction = true;
    const item = pane.viewer.world.getItemAt(pane.viewer.world.getItemCount() - 1);
    const point = item.viewportToImageCoordinates(pane.viewer.viewport.pointFromPixel(event.position, true));
    const changed = slicesAt(state, pane.plane, point.x, point.y, sizes);
    Object.assign(state.slice, changed);
    onSlicesChanged(Object.keys(changed));
  };

  for (const pane of side) {
    pane.plane = OTHER_PLANES[state.plane][pane.index];
    pane.viewer = makeViewer(pane.element, tileSourceFor(pane.plane));
    pane.element.querySelector('.ortho-label').textContent = pane.plane.toUpperCase();
    addCrosshair(pane);
    pane.viewer.addHandler('canvas-click', onClick(pane));
    pane.viewer.addHandler('update-viewport', redraw);
  }
  addCrosshair(main);
  mainViewer.addHandler('canvas-click', onClick(main));
  mainViewer.addHandler('update-viewport', redraw);
  state.sidePanes = side;

  return function update({ planes = null, keepView = true } = {}) {
    for (const pane of side) {
      const plane = OTHER_PLANES[state.plane][pane.index];
      const planeChanged = plane !== pane.plane;
      pane.plane = plane;
      pane.element.querySelector('.ortho-label').textContent = plane.toUpperCase();
      if (planeChanged || planes === null || planes.includes(plane)) {
        swapTiledImage(pane.viewer, tileSourceFor(plane), keepView && !planeChanged);
      }
    }
    redraw();
  };
}
