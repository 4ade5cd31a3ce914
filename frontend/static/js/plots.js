// Bar charts of histograms as inline SVG, drawn at the container's own width so text stays readable on a
// phone: axes with ticks and labels, linear or logarithmic x, a marker line (e.g. the threshold), and a
// read-out of the bar under the pointer or finger.
const SVG_NS = 'http://www.w3.org/2000/svg';
const MARGIN = { top: 14, right: 14, bottom: 46, left: 52 };

function el(name, attributes = {}, text = null) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== null) node.textContent = text;
  return node;
}

// About `count` round tick values covering [lo, hi]; `whole`: integers only (counts).
export function niceTicks(lo, hi, count = 5, whole = false) {
  if (!(hi > lo)) return [lo];
  const raw = Math.max((hi - lo) / Math.max(1, count), whole ? 1 : 0);
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw && (!whole || Number.isInteger(s))) || 10 * power;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(+v.toPrecision(12));
  return ticks;
}

// Ticks of a log axis: powers of ten, with 2 and 5 between them when the range spans few decades.
export function logTicks(lo, hi) {
  const ticks = [];
  const first = Math.floor(Math.log10(lo)), last = Math.ceil(Math.log10(hi));
  const steps = last - first <= 2 ? [1, 2, 5] : [1];
  for (let e = first; e <= last; e += 1) {
    for (const m of steps) {
      const v = m * Math.pow(10, e);
      if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) ticks.push(+v.toPrecision(12));
    }
  }
  return ticks.length >= 2 ? ticks : [lo, hi].map((v) => +v.toPrecision(2));
}

export function compact(value) {
  const a = Math.abs(value);
  if (a === 0) return '0';
  if (a >= 1e9) return `${+(value / 1e9).toPrecision(3)}G`;
  if (a >= 1e6) return `${+(value / 1e6).toPrecision(3)}M`;
  if (a >= 1e4) return `${+(value / 1e3).toPrecision(3)}k`;
  if (a >= 1) return String(+value.toPrecision(4));
  if (a >= 1e-3) return String(+value.toPrecision(2));
  return value.toExponential(0);
}

// Draw `histogram` ({edges, counts}) into `container`; options: logX, xLabel, yLabel, unit, marker
// ({value, label}), title (for screen readers). Redraws itself when the container changes width.
export function barChart(container, histogram, options = {}) {
  const chart = { container, histogram, options, svg: null };
  const readout = document.createElement('p');
  readout.className = 'plot-readout small muted';
  readout.setAttribute('aria-live', 'polite');
  const draw = (force = false) => {
    const width = Math.max(240, Math.floor(container.clientWidth || 320));
    if (chart.width === width && force !== true) return;
    chart.width = width;
    chart.svg?.remove();
    chart.svg = render(histogram, options, width, readout);
    container.prepend(chart.svg);
  };
  container.replaceChildren(readout);
  readout.textContent = options.hint || 'Point at (or tap) a bar for its numbers.';
  draw();
  if (typeof ResizeObserver === 'function') new ResizeObserver(() => draw()).observe(container);
  chart.update = (changes) => { Object.assign(options, changes); draw(true); };
  return chart;
}

function render({ edges = [], counts = [] }, options, width, readout) {
  const height = width < 420 ? 210 : 240;
  const svg = el('svg', { class: 'plot', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img',
                          'aria-label': options.title || options.xLabel || 'histogram' });
  const total = counts.reduce((a, b) => a + b, 0);
  const plotW = width - MARGIN.left - MARGIN.right, plotH = height - MARGIN.top - MARGIN.bottom;
  const frame = el('g', { transform: `translate(${MARGIN.left} ${MARGIN.top})` });
  svg.appendChild(frame);
  if (!counts.length || total === 0 || edges.length !== counts.length + 1) {
    frame.appendChild(el('text', { x: plotW / 2, y: plotH / 2, 'text-anchor': 'middle', class: 'plot-empty' }, 'nothing to plot'));
    return svg;
  }
  const logX = Boolean(options.logX) && edges[edges.length - 1] > 0;
  const lowPositive = edges.find((e) => e > 0);
  const xValue = (v) => (logX ? Math.log10(Math.max(v, lowPositive)) : v);
  const x0 = xValue(edges[0]), x1 = xValue(edges[edges.length - 1]);
  const sx = (v) => ((xValue(v) - x0) / (x1 - x0 || 1)) * plotW;
  const maxCount = Math.max(...counts);
  let yTicks, sy;
  if (options.logY) {  // counts spanning decades: log(1 + n), ticks at powers of ten
    const top = Math.pow(10, Math.ceil(Math.log10(Math.max(maxCount, 1))));
    yTicks = [0];
    for (let v = 1; v <= top; v *= 10) yTicks.push(v);
    if (yTicks.length > 6) yTicks = yTicks.filter((v, i) => i === 0 || i % 2 === 1);
    sy = (v) => plotH - (Math.log10(1 + v) / Math.log10(1 + top)) * plotH;
  } else {
    yTicks = niceTicks(0, maxCount, height < 220 ? 4 : 5, true);
    const step = yTicks.length > 1 ? yTicks[1] - yTicks[0] : 1;
    if (yTicks[yTicks.length - 1] < maxCount) yTicks.push(yTicks[yTicks.length - 1] + step);
    const yMax = Math.max(maxCount, yTicks[yTicks.length - 1]);
    sy = (v) => plotH - (v / yMax) * plotH;
  }

  // grid and y axis
  for (const t of yTicks) {
    frame.appendChild(el('line', { x1: 0, x2: plotW, y1: sy(t), y2: sy(t), class: 'plot-grid' }));
    frame.appendChild(el('text', { x: -6, y: sy(t), dy: '0.32em', 'text-anchor': 'end', class: 'plot-tick' }, compact(t)));
  }
  // bars
  const bars = el('g', { class: 'plot-bars' });
  counts.forEach((count, i) => {
    const left = sx(edges[i]), right = sx(edges[i + 1]);
    const gap = right - left > 4 ? 1 : 0;
    const bar = el('rect', { x: left + gap / 2, y: sy(count), width: Math.max(0.5, right - left - gap),
                             height: Math.max(0, plotH - sy(count)), class: 'plot-bar', 'data-index': i });
    bar.appendChild(el('title', {}, `${compact(edges[i])}–${compact(edges[i + 1])}${options.unit ? ` ${options.unit}` : ''}: ${count.toLocaleString()}`));
    bars.appendChild(bar);
  });
  frame.appendChild(bars);
  // marker (e.g. the threshold)
  const marker = options.marker;
  if (marker && Number.isFinite(marker.value) && marker.value >= edges[0] && marker.value <= edges[edges.length - 1]) {
    const mx = sx(marker.value);
    frame.appendChild(el('line', { x1: mx, x2: mx, y1: 0, y2: plotH, class: 'plot-marker' }));
    const anchor = mx > plotW * 0.7 ? 'end' : 'start';
    frame.appendChild(el('text', { x: mx + (anchor === 'end' ? -4 : 4), y: 10, 'text-anchor': anchor, class: 'plot-marker-label' },
                         `${marker.label || ''} ${compact(marker.value)}`.trim()));
  }
  // x axis
  frame.appendChild(el('line', { x1: 0, x2: plotW, y1: plotH, y2: plotH, class: 'plot-axis' }));
  const lo = edges[0] > 0 || !logX ? edges[0] : lowPositive;
  const xTicks = logX ? logTicks(lo, edges[edges.length - 1]) : niceTicks(edges[0], edges[edges.length - 1], width < 420 ? 4 : 6);
  let lastRight = -Infinity;
  for (const t of xTicks) {
    const tx = sx(t);
    if (tx < -0.5 || tx > plotW + 0.5) continue;
    frame.appendChild(el('line', { x1: tx, x2: tx, y1: plotH, y2: plotH + 5, class: 'plot-axis' }));
    const label = compact(t);
    const half = label.length * 3.6;
    if (tx - half < lastRight + 4) continue;  // no overlapping labels
    lastRight = tx + half;
    frame.appendChild(el('text', { x: tx, y: plotH + 18, 'text-anchor': 'middle', class: 'plot-tick' }, label));
  }
  frame.appendChild(el('text', { x: plotW / 2, y: plotH + 38, 'text-anchor': 'middle', class: 'plot-label' },
                       (options.xLabel || '') + (logX ? ' (log scale)' : '')));
  frame.appendChild(el('text', { transform: `translate(${-40} ${plotH / 2}) rotate(-90)`, 'text-anchor': 'middle', class: 'plot-label' },
                       (options.yLabel || 'count') + (options.logY ? ' (log)' : '')));

  // read-out of the bar under the pointer or finger
  let active = null;
  const pick = (event) => {
    const box = svg.getBoundingClientRect();
    const px = event.clientX - box.left - MARGIN.left;
    let index = -1;
    for (let i = 0; i < counts.length; i += 1) if (px >= sx(edges[i]) && px < sx(edges[i + 1])) index = i;
    active?.classList.remove('active');
    if (index < 0) return;
    active = bars.children[index];
    active.classList.add('active');
    const share = total ? ` (${((100 * counts[index]) / total).toFixed(1)} %)` : '';
    readout.textContent = `${compact(edges[index])}–${compact(edges[index + 1])}${options.unit ? ` ${options.unit}` : ''}: `
      + `${counts[index].toLocaleString()} ${options.yLabel || ''}${share}`;
  };
  svg.addEventListener('pointermove', pick);
  svg.addEventListener('pointerdown', pick);
  return svg;
}
