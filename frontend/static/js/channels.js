// The channel panel: channels on/off, colour, contrast window over a histogram, auto-contrast, gamma, invert.
const AUTO_PERCENTILES = [0.001, 0.999];

export function defaultDisplay(info) {
  return {
    on: info.channels.map(() => true),
    windows: info.windows.map((w) => [...w]),
    colors: info.colors.map((c) => c.toUpperCase()),
    gamma: 1,
    invert: false,
  };
}

// Query parameters the tile endpoint understands (see tiler.display.parse_display).
export function displayQuery(display, info) {
  const params = new URLSearchParams();
  const on = display.on.map((v, i) => (v ? i : -1)).filter((i) => i >= 0);
  if (on.length !== info.channels.length) params.set('c', on.join(','));
  params.set('w', display.windows.map(([a, b]) => `${+a.toPrecision(6)}:${+b.toPrecision(6)}`).join(','));
  params.set('color', display.colors.join(','));
  if (display.gamma !== 1) params.set('gamma', String(display.gamma));
  if (display.invert) params.set('invert', '1');
  return params.toString();
}

function percentileFromHistogram(hist, fraction) {
  const total = hist.counts.reduce((a, b) => a + b, 0);
  let seen = 0;
  for (let i = 0; i < hist.counts.length; i += 1) {
    seen += hist.counts[i];
    if (seen >= fraction * total) return hist.edges[i + 1];
  }
  return hist.edges[hist.edges.length - 1];
}

export function autoWindow(hist) {
  return AUTO_PERCENTILES.map((p) => percentileFromHistogram(hist, p));
}

function drawHistogram(canvas, hist, window, color) {
  const ctx = canvas.getContext('2d');
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  const logs = hist.counts.map((n) => Math.log1p(n));
  const max = Math.max(...logs, 1);
  ctx.fillStyle = `#${color}`;
  logs.forEach((v, i) => {
    const h = (v / max) * height;
    ctx.fillRect((i / logs.length) * width, height - h, Math.ceil(width / logs.length), h);
  });
  const lo = hist.edges[0], hi = hist.edges[hist.edges.length - 1];
  const x = (value) => ((value - lo) / (hi - lo || 1)) * width;
  ctx.fillStyle = 'rgba(255,255,255,.18)';
  ctx.fillRect(x(window[0]), 0, Math.max(1, x(window[1]) - x(window[0])), height);
}

export function buildChannelPanel(container, info, histograms, display, onChange) {
  container.innerHTML = '';
  info.channels.forEach((name, i) => {
    const hist = histograms[i];
    const lo = Math.min(hist.edges[0], display.windows[i][0]);
    const hi = Math.max(hist.edges[hist.edges.length - 1], display.windows[i][1]);
    const step = info.dtype.startsWith('float') ? (hi - lo) / 1000 : 1;
    const row = document.createElement('fieldset');
    row.className = 'channel';
    row.innerHTML = `
      <legend><label class="inline"><input type="checkbox" class="on"> <span class="cname"></span></label>
        <input type="color" class="color" title="colour"></legend>
      <canvas class="histogram" width="240" height="48"></canvas>
      <label class="range">min <input type="range" class="lo"><output class="lo-out"></output></label>
      <label class="range">max <input type="range" class="hi"><output class="hi-out"></output></label>
      <button type="button" class="auto">Auto contrast</button>`;
    row.querySelector('.cname').textContent = name;
    const on = row.querySelector('.on'), color = row.querySelector('.color');
    const loInput = row.querySelector('.lo'), hiInput = row.querySelector('.hi');
    for (const input of [loInput, hiInput]) Object.assign(input, { min: lo, max: hi, step });
    const sync = () => {
      on.checked = display.on[i];
      color.value = `#${display.colors[i].toLowerCase()}`;
      loInput.value = display.windows[i][0];
      hiInput.value = display.windows[i][1];
      row.querySelector('.lo-out').textContent = (+display.windows[i][0]).toPrecision(4);
      row.querySelector('.hi-out').textContent = (+display.windows[i][1]).toPrecision(4);
      drawHistogram(row.querySelector('canvas'), hist, display.windows[i], display.colors[i]);
    };
    on.addEventListener('change', () => { display.on[i] = on.checked; onChange(); });
    color.addEventListener('input', () => { display.colors[i] = color.value.slice(1).toUpperCase(); sync(); onChange(); });
    const setWindow = () => {
      let a = +loInput.value, b = +hiInput.value;
      if (b <= a) b = a + step;
      display.windows[i] = [a, b];
      sync();
      onChange();
    };
    loInput.addEventListener('input', setWindow);
    hiInput.addEventListener('input', setWindow);
    row.querySelector('.auto').addEventListener('click', () => { display.windows[i] = autoWindow(hist); sync(); onChange(); });
    sync();
    container.appendChild(row);
  });
  const common = document.createElement('fieldset');
  common.className = 'channel';
  common.innerHTML = `<legend>All channels</legend>
    <label class="range">gamma <input type="range" class="gamma" min="0.2" max="5" step="0.05"><output></output></label>
    <label class="inline"><input type="checkbox" class="invert"> invert</label>
    <button type="button" class="reset">Reset</button>`;
  const gamma = common.querySelector('.gamma'), invert = common.querySelector('.invert');
  const syncCommon = () => { gamma.value = display.gamma; invert.checked = display.invert; common.querySelector('output').textContent = (+display.gamma).toFixed(2); };
  gamma.addEventListener('input', () => { display.gamma = +gamma.value; syncCommon(); onChange(); });
  invert.addEventListener('change', () => { display.invert = invert.checked; onChange(); });
  common.querySelector('.reset').addEventListener('click', () => {
    Object.assign(display, defaultDisplay(info));
    buildChannelPanel(container, info, histograms, display, onChange);
    onChange();
  });
  syncCommon();
  container.appendChild(common);
}
