// Longitudinal view: the measure table on the page drawn as inline SVG, one line per subject, x = visit date.
const figure = document.getElementById('longitudinal');
const table = document.getElementById('longitudinal-table');
const SVG = 'http://www.w3.org/2000/svg';
const WIDTH = 640, HEIGHT = 300, PAD = { left: 56, right: 110, top: 14, bottom: 36 };
const COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22'];

function node(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

function readRows() {
  return [...table.querySelectorAll('tbody tr')]
    .map((tr) => ({ subject: tr.dataset.subject, date: Date.parse(tr.dataset.date), label: tr.dataset.date,
      value: Number(tr.dataset.value) }))
    .filter((row) => Number.isFinite(row.date) && Number.isFinite(row.value));
}

function draw(svg, rows) {
  svg.setAttribute('viewBox', `0 0 ${WIDTH} ${HEIGHT}`);
  svg.replaceChildren();
  if (!rows.length) {
    svg.append(node('text', { x: WIDTH / 2, y: HEIGHT / 2, 'text-anchor': 'middle', class: 'plot-empty' }, 'No dated visits with this measure'));
    return;
  }
  const dates = rows.map((r) => r.date), values = rows.map((r) => r.value);
  let [x0, x1] = [Math.min(...dates), Math.max(...dates)];
  let [y0, y1] = [Math.min(...values), Math.max(...values)];
  if (x0 === x1) { x0 -= 86400000; x1 += 86400000; }
  if (y0 === y1) { y0 -= Math.abs(y0) || 1; y1 += Math.abs(y1) || 1; }
  const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
  const x = (d) => PAD.left + (d - x0) / (x1 - x0) * (WIDTH - PAD.left - PAD.right);
  const y = (v) => HEIGHT - PAD.bottom - (v - y0) / (y1 - y0) * (HEIGHT - PAD.top - PAD.bottom);
  svg.append(node('line', { x1: PAD.left, y1: HEIGHT - PAD.bottom, x2: WIDTH - PAD.right, y2: HEIGHT - PAD.bottom, stroke: '#888' }));
  svg.append(node('line', { x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: HEIGHT - PAD.bottom, stroke: '#888' }));
  for (const v of [y0 + pad, (y0 + y1) / 2, y1 - pad]) {
    svg.append(node('text', { x: PAD.left - 6, y: y(v) + 4, 'text-anchor': 'end', 'font-size': 11 }, v.toPrecision(3)));
  }
  for (const d of [x0, x1]) {
    svg.append(node('text', { x: x(d), y: HEIGHT - PAD.bottom + 16, 'text-anchor': 'middle', 'font-size': 11 },
      new Date(d).toISOString().slice(0, 10)));
  }
  const subjects = [...new Set(rows.map((r) => r.subject))];
  subjects.forEach((subject, index) => {
    const colour = COLOURS[index % COLOURS.length];
    const points = rows.filter((r) => r.subject === subject).sort((a, b) => a.date - b.date);
    const line = node('polyline', { points: points.map((p) => `${x(p.date)},${y(p.value)}`).join(' '), fill: 'none',
      stroke: colour, 'stroke-width': 2, class: 'subject-line' });
    line.append(node('title', {}, subject));
    svg.append(line);
    for (const p of points) {
      const dot = node('circle', { cx: x(p.date), cy: y(p.value), r: 3.5, fill: colour });
      dot.append(node('title', {}, `${subject} · ${p.label} · ${p.value}`));
      svg.append(dot);
    }
    svg.append(node('text', { x: WIDTH - PAD.right + 6, y: PAD.top + 14 * index + 10, fill: colour, 'font-size': 12 }, subject));
  });
}

if (figure && table) draw(figure.querySelector('svg'), readRows());
else if (figure) figure.hidden = true;
const choice = document.getElementById('measure-choice');
choice?.addEventListener('change', () => choice.form.submit());
