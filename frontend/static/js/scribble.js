// Scribbles: freehand strokes painted over the image (mouse, pen or finger) to teach the pixel classifier
// which class is where. Strokes are kept in level-0 image pixels — {class, points, radius, z} — and drawn
// in an SVG layer above OpenSeadragon that follows every pan and zoom. Volumes: XY plane only.
import { imageItem, planeSize } from './viewer.js';

const SVG_NS = 'http://www.w3.org/2000/svg';
const MIN_STEP_PX = 2;  // screen pixels between two recorded points of a stroke
// The classifier's limits (tiler/segmentation/classifier.py): radius, strokes, points per stroke.
export const RADIUS_LIMITS = [1, 64];
export const MAX_STROKES = 200;
const MAX_POINTS = 2000;

const round1 = (value) => Math.round(value * 10) / 10;

export function createScribbles(state, { classes, onChange = () => {} }) {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('class', 'scribble-layer');
  svg.setAttribute('aria-hidden', 'true');
  const group = document.createElementNS(SVG_NS, 'g');
  svg.appendChild(group);
  state.element.appendChild(svg);
  const strokes = [];
  const layer = {
    strokes, classes, painting: false, activeClass: Math.min(1, classes.length - 1), brushPx: 12, shown: true, svg,
  };
  let current = null;  // {pointerId, stroke, path, last}

  const zNow = () => (state.info.ndim === 3 ? state.slice.xy : 0);
  layer.canPaint = () => state.info.ndim !== 3 || state.plane === 'xy';

  // Image pixels → element pixels, as an SVG matrix (handles flips).
  const placeGroup = () => {
    const item = imageItem(state.viewer);
    if (!item) return;
    const at = (x, y) => item.imageToViewerElementCoordinates(new OpenSeadragon.Point(x, y), true);
    const o = at(0, 0), ex = at(1000, 0), ey = at(0, 1000);
    const m = [(ex.x - o.x) / 1000, (ex.y - o.y) / 1000, (ey.x - o.x) / 1000, (ey.y - o.y) / 1000, o.x, o.y];
    layer.scale = Math.hypot(m[0], m[1]);
    group.setAttribute('transform', `matrix(${m.join(' ')})`);
  };
  const pathData = (points) => {
    const [first, ...rest] = points;
    return `M${first[0]} ${first[1]}` + (rest.length ? rest.map(([x, y]) => `L${x} ${y}`).join('') : `L${first[0]} ${first[1]}`);
  };
  const drawStroke = (stroke) => {
    const path = document.createElementNS(SVG_NS, 'path');
    path.setAttribute('class', 'scribble');
    path.setAttribute('d', pathData(stroke.points));
    path.setAttribute('stroke', classes[stroke.class]?.color || '#ffffff');
    path.setAttribute('stroke-width', String(2 * stroke.radius));
    group.appendChild(path);
    return path;
  };
  layer.render = () => {
    group.replaceChildren();
    svg.style.display = layer.shown && layer.canPaint() ? '' : 'none';
    const z = zNow();
    for (const stroke of strokes) if (stroke.z === z) drawStroke(stroke);
    placeGroup();
  };

  const rawPoint = (event) => {
    const box = state.element.getBoundingClientRect();
    const item = imageItem(state.viewer);
    return item.viewerElementToImageCoordinates(new OpenSeadragon.Point(event.clientX - box.left, event.clientY - box.top));
  };
  const inside = (point) => {
    const { width, height } = planeSize(state.info, state.plane);
    return point.x >= 0 && point.y >= 0 && point.x < width && point.y < height;
  };
  const imagePoint = (event) => {  // strokes that leave the image follow its edge
    const point = rawPoint(event);
    const { width, height } = planeSize(state.info, state.plane);
    return [round1(Math.min(width - 1, Math.max(0, point.x))), round1(Math.min(height - 1, Math.max(0, point.y)))];
  };
  svg.addEventListener('pointerdown', (event) => {
    if (!layer.painting || current || event.button > 0) return;
    event.preventDefault();
    if (strokes.length >= MAX_STROKES) { layer.full = true; onChange(layer); return; }
    if (!inside(rawPoint(event))) return;  // a stroke starts on the image
    svg.setPointerCapture(event.pointerId);
    placeGroup();
    const radius = Math.min(RADIUS_LIMITS[1], Math.max(RADIUS_LIMITS[0], round1(layer.brushPx / 2 / (layer.scale || 1))));
    const stroke = { class: layer.activeClass, points: [imagePoint(event)], radius, z: zNow() };
    current = { pointerId: event.pointerId, stroke, path: drawStroke(stroke), last: [event.clientX, event.clientY] };
  });
  svg.addEventListener('pointermove', (event) => {
    if (!current || event.pointerId !== current.pointerId) return;
    event.preventDefault();
    if (Math.hypot(event.clientX - current.last[0], event.clientY - current.last[1]) < MIN_STEP_PX) return;
    current.last = [event.clientX, event.clientY];
    const point = imagePoint(event);
    if (current.stroke.points.length >= MAX_POINTS && strokes.length + 1 < MAX_STROKES) {  // a long drag: go on in a new stroke
      const { stroke } = current;
      strokes.push(stroke);
      current.stroke = { ...stroke, points: [stroke.points[stroke.points.length - 1]] };
      current.path = drawStroke(current.stroke);
    }
    if (current.stroke.points.length >= MAX_POINTS) return;
    current.stroke.points.push(point);
    current.path.setAttribute('d', pathData(current.stroke.points));
  });
  const finish = (event) => {
    if (!current || event.pointerId !== current.pointerId) return;
    strokes.push(current.stroke);
    current = null;
    onChange(layer);
  };
  svg.addEventListener('pointerup', finish);
  svg.addEventListener('pointercancel', finish);

  layer.setPainting = (on) => {
    layer.painting = Boolean(on) && layer.canPaint();
    state.painting = layer.painting;
    state.viewer.setMouseNavEnabled(!layer.painting);
    svg.classList.toggle('painting', layer.painting);
    layer.render();
    onChange(layer);
    return layer.painting;
  };
  layer.setShown = (shown) => {
    layer.shown = shown;
    if (!shown && layer.painting) layer.setPainting(false);
    layer.render();
  };
  layer.undo = () => { strokes.pop(); layer.render(); onChange(layer); };
  layer.clear = () => { strokes.length = 0; layer.render(); onChange(layer); };
  layer.dropClass = (index) => {  // strokes of later classes move down one
    for (let i = strokes.length - 1; i >= 0; i -= 1) {
      if (strokes[i].class === index) strokes.splice(i, 1);
      else if (strokes[i].class > index) strokes[i].class -= 1;
    }
    layer.render();
  };
  layer.payload = () => strokes.map((s) => ({ class: s.class, points: s.points.map((p) => [...p]), radius: s.radius, z: s.z }));

  for (const event of ['update-viewport', 'resize', 'open']) state.viewer.addHandler(event, placeGroup);
  state.onChange(() => {
    if (layer.painting && !layer.canPaint()) layer.setPainting(false);
    else layer.render();
  });
  layer.render();
  return layer;
}
