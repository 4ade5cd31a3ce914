// The viewer's analysis panel (analysts only): a method chooser and a parameter form built from the server's
// method schema, optional mail recipients, and for the pixel classifier its classes and painted scribbles;
// submitting queues an analysis job and links to it.
import { csrfToken } from './csrf.js';
import { createScribbles, MAX_STROKES } from './scribble.js';

const CLASS_COLOURS = ['#3b82f6', '#f97316', '#22c55e', '#e11d48', '#a855f7', '#eab308', '#06b6d4', '#f472b6'];
const CLASSIFIER = 'classifier';
const SCRIBBLE_PARAMS = new Set(['scribbles', 'class_names']);

const humanise = (name) => name.replace(/_/g, ' ').replace(/^./, (c) => c.toUpperCase());

// One form field per parameter of the method's schema: {element, read(), name}. `channels`: the image's
// channel names (a channel parameter becomes a choice of them).
function parameterField(param, channels = []) {
  if (param.name === 'channel' && param.type === 'int' && channels.length) {
    const field = parameterField({ ...param, type: 'choice', choices: channels.map((_, i) => i) });
    const select = field.element.querySelector('select');
    [...select.options].forEach((option, i) => { option.textContent = `${i}: ${channels[i]}`; });
    if (channels.length === 1) field.element.hidden = true;
    return field;
  }
  const id = `param-${param.name}`;
  const wrap = document.createElement('div');
  wrap.className = 'param';
  let input;
  if (param.type === 'bool') {
    wrap.innerHTML = `<label class="inline"><input type="checkbox" id="${id}"> <span></span></label>`;
    input = wrap.querySelector('input');
    input.checked = Boolean(param.default);
    wrap.querySelector('span').textContent = param.label || humanise(param.name);
  } else {
    wrap.innerHTML = `<label for="${id}"></label>`;
    wrap.querySelector('label').textContent = param.label || humanise(param.name);
    if (param.type === 'choice') {
      input = document.createElement('select');
      for (const choice of param.choices || []) {
        const option = document.createElement('option');
        option.value = String(choice);
        option.textContent = String(choice);
        input.appendChild(option);
      }
      if (param.default !== undefined && param.default !== null) input.value = String(param.default);
    } else {
      input = document.createElement('input');
      input.type = 'number';
      input.step = param.type === 'int' ? '1' : 'any';
      input.required = param.default !== null && param.default !== undefined;
      if (param.min !== undefined && param.min !== null) input.min = String(param.min);
      if (param.max !== undefined && param.max !== null) input.max = String(param.max);
      if (param.default !== undefined && param.default !== null) input.value = String(param.default);
      input.inputMode = param.type === 'int' ? 'numeric' : 'decimal';
    }
    input.id = id;
    wrap.appendChild(input);
  }
  input.name = param.name;
  if (param.help) {
    const help = document.createElement('p');
    help.className = 'muted small help';
    help.textContent = param.help;
    wrap.appendChild(help);
  }
  const read = () => {
    if (param.type === 'bool') return input.checked;
    if (param.type === 'choice') return (param.choices || []).find((c) => String(c) === input.value) ?? input.value;
    if (input.value === '') return null;
    return param.type === 'int' ? parseInt(input.value, 10) : parseFloat(input.value);
  };
  return { element: wrap, read, name: param.name };
}

export function parseRecipients(text) {
  return text.split(/[\s,;]+/).map((s) => s.trim()).filter(Boolean);
}

// The classifier's part of the panel: classes (name, colour), which one paints, brush, paint mode, undo, clear.
function classifierSection(state, panel) {
  const classes = [{ name: 'background', color: CLASS_COLOURS[0] }, { name: 'object', color: CLASS_COLOURS[1] }];
  const section = document.createElement('section');
  section.className = 'classifier stack';
  section.innerHTML = `
    <div class="classes-head"><strong>Classes</strong> <button type="button" class="add-class small-button">+ class</button></div>
    <ul class="class-list"></ul>
    <div class="paint-tools">
      <div class="class-chips" role="radiogroup" aria-label="Paint class"></div>
      <label class="inline brush">brush <input type="range" class="brush-size" min="2" max="60" step="1" value="12"
        aria-label="Brush size (screen pixels)"><output class="brush-out"></output></label>
      <div class="paint-buttons">
        <button type="button" class="paint-toggle" aria-pressed="false">✎ Paint</button>
        <button type="button" class="undo">Undo</button>
        <button type="button" class="clear">Clear</button>
      </div>
      <p class="muted small stroke-count"></p>
    </div>`;
  const list = section.querySelector('.class-list'), chips = section.querySelector('.class-chips');
  const toggle = section.querySelector('.paint-toggle'), count = section.querySelector('.stroke-count');
  const brush = section.querySelector('.brush-size');

  const syncTools = (layer) => {
    toggle.setAttribute('aria-pressed', String(layer.painting));
    toggle.textContent = layer.painting ? '✓ Done painting' : '✎ Paint';
    toggle.disabled = !layer.canPaint();
    panel.classList.toggle('painting', layer.painting);
    const perClass = classes.map((_, i) => layer.strokes.filter((s) => s.class === i).length);
    count.textContent = !layer.canPaint() ? 'Switch to the XY plane to paint.'
      : layer.strokes.length >= MAX_STROKES ? `${MAX_STROKES} strokes: the most one analysis takes. Undo some to paint more.`
      : `${layer.strokes.length} stroke${layer.strokes.length === 1 ? '' : 's'}`
        + (layer.strokes.length ? ` (${classes.map((c, i) => `${c.name}: ${perClass[i]}`).join(', ')})` : ' — paint a few strokes of every class');
    section.querySelector('.undo').disabled = layer.strokes.length === 0;
    section.querySelector('.clear').disabled = layer.strokes.length === 0;
  };
  const layer = createScribbles(state, { classes, onChange: syncTools });

  const renderClasses = () => {
    list.replaceChildren();
    chips.replaceChildren();
    classes.forEach((klass, i) => {
      const item = document.createElement('li');
      item.innerHTML = `<input type="color" aria-label="Colour"><input type="text" aria-label="Class name" maxlength="60">
        <button type="button" class="remove small-button" aria-label="Remove class" title="Remove this class and its strokes">×</button>`;
      const [colour, name] = item.querySelectorAll('input');
      colour.value = klass.color;
      name.value = klass.name;
      colour.addEventListener('input', () => { klass.color = colour.value; layer.render(); renderChips(); });
      name.addEventListener('input', () => { klass.name = name.value.trim() || `class ${i + 1}`; renderChips(); syncTools(layer); });
      const remove = item.querySelector('.remove');
      remove.disabled = classes.length <= 2;
      remove.addEventListener('click', () => {
        classes.splice(i, 1);
        layer.dropClass(i);
        layer.activeClass = Math.min(layer.activeClass, classes.length - 1);
        renderClasses();
        syncTools(layer);
      });
      list.appendChild(item);
    });
    renderChips();
  };
  const renderChips = () => {
    chips.replaceChildren();
    classes.forEach((klass, i) => {
      const chip = document.createElement('button');
      chip.type = 'button';
      chip.className = 'chip';
      chip.setAttribute('role', 'radio');
      chip.setAttribute('aria-checked', String(i === layer.activeClass));
      chip.style.setProperty('--chip', klass.color);
      chip.textContent = klass.name;
      chip.addEventListener('click', () => { layer.activeClass = i; renderChips(); });
      chips.appendChild(chip);
    });
  };
  section.querySelector('.add-class').addEventListener('click', () => {
    classes.push({ name: `class ${classes.length + 1}`, color: CLASS_COLOURS[classes.length % CLASS_COLOURS.length] });
    layer.activeClass = classes.length - 1;
    renderClasses();
    syncTools(layer);
    list.querySelector('li:last-child input[type=text]').select();
  });
  const syncBrush = () => { layer.brushPx = +brush.value; section.querySelector('.brush-out').textContent = `${brush.value} px`; };
  brush.addEventListener('input', syncBrush);
  toggle.addEventListener('click', () => layer.setPainting(!layer.painting));
  section.querySelector('.undo').addEventListener('click', () => layer.undo());
  section.querySelector('.clear').addEventListener('click', () => {
    if (layer.strokes.length < 5 || window.confirm(`Remove all ${layer.strokes.length} strokes?`)) layer.clear();
  });
  syncBrush();
  renderClasses();
  syncTools(layer);
  return {
    section, layer,
    params: () => ({ scribbles: layer.payload(), class_names: classes.map((c) => c.name) }),
    problem: () => {
      const painted = new Set(layer.strokes.map((s) => s.class));
      if (painted.size < 2) return 'Paint strokes of at least two classes before running the classifier.';
      const names = classes.map((c) => c.name);
      if (new Set(names).size !== names.length) return 'Give every class a different name.';
      return null;
    },
  };
}

export async function setUpAnalysis(state, panel) {
  const button = document.getElementById('show-analysis');
  const form = panel.querySelector('form');
  const select = form.querySelector('select[name=method]');
  const paramsBox = form.querySelector('.method-params');
  const description = form.querySelector('.method-help');
  const errorLine = form.querySelector('.form-error');
  const done = form.querySelector('.submitted');
  let methods = [], fields = [], classifier = null, loaded = null;
  state.analysis = { submitted: [] };

  const showError = (message) => {
    errorLine.textContent = message || '';
    errorLine.hidden = !message;
    if (message) errorLine.scrollIntoView({ block: 'nearest' });
  };
  const chooseMethod = () => {
    const method = methods.find((m) => m.name === select.value);
    paramsBox.replaceChildren();
    fields = [];
    description.textContent = method?.description || '';
    for (const param of method?.params || []) {
      if (!['int', 'float', 'choice', 'bool'].includes(param.type) || SCRIBBLE_PARAMS.has(param.name)) continue;
      const field = parameterField(param, state.info.channels || []);
      fields.push(field);
      paramsBox.appendChild(field.element);
    }
    // a manual threshold needs its value, the automatic ones none
    const algorithm = paramsBox.querySelector('select[name=algorithm]');
    const value = paramsBox.querySelector('input[name=value]');
    if (algorithm && value) {
      const sync = () => {
        const manual = algorithm.value === 'manual';
        value.closest('.param').hidden = !manual;
        value.required = manual;
      };
      algorithm.addEventListener('change', sync);
      sync();
    }
    const isClassifier = method?.name === CLASSIFIER;
    if (isClassifier && !classifier) {
      classifier = classifierSection(state, panel);
      paramsBox.after(classifier.section);
    }
    if (classifier) {
      classifier.section.hidden = !isClassifier;
      classifier.layer.setShown(isClassifier);
    }
    showError('');
  };
  const load = async () => {
    const response = await fetch(panel.dataset.methods, { headers: { Accept: 'application/json' } });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    methods = Array.isArray(body) ? body : body.methods || [];
    select.replaceChildren(...methods.map((m) => {
      const option = document.createElement('option');
      option.value = m.name;
      option.textContent = m.label || humanise(m.name);
      return option;
    }));
    chooseMethod();
  };
  const open = (show) => {
    panel.hidden = !show;
    button?.setAttribute('aria-pressed', String(show));
    if (show && !loaded) loaded = load().catch((error) => { loaded = null; showError(`Cannot load the methods: ${error.message}`); });
    if (!show && classifier?.layer.painting) classifier.layer.setPainting(false);
  };
  button?.addEventListener('click', () => open(panel.hidden));
  panel.querySelector('.close')?.addEventListener('click', () => open(false));
  select.addEventListener('change', chooseMethod);

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showError('');
    done.hidden = true;
    const method = select.value;
    const params = Object.fromEntries(fields.filter((f) => !f.element.hidden || f.name === 'channel')
      .map((f) => [f.name, f.read()]).filter(([, v]) => v !== null));
    if (method === CLASSIFIER && classifier) {
      const problem = classifier.problem();
      if (problem) { showError(problem); return; }
      Object.assign(params, classifier.params());
    }
    const recipients = parseRecipients(form.querySelector('[name=recipients]').value);
    const bad = recipients.find((r) => !/^[^@\s]+@[^@\s]+$/.test(r));
    if (bad) { showError(`“${bad}” is not an e-mail address.`); return; }
    const payload = { method, params, recipients };
    const submit = form.querySelector('button[type=submit]');
    submit.disabled = true;
    try {
      const response = await fetch(panel.dataset.submit, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json', 'X-CSRFToken': csrfToken() },
        body: JSON.stringify(payload),
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) { showError(body.error || `The server answered ${response.status}.`); return; }
      state.analysis.submitted.push({ payload, response: body });
      if (classifier?.layer.painting) classifier.layer.setPainting(false);
      const link = done.querySelector('a');
      link.href = body.job_url || `/jobs/${encodeURIComponent(body.job_id)}`;
      done.hidden = false;
      done.scrollIntoView({ block: 'nearest' });
    } catch (error) {
      showError(`Could not send: ${error.message}`);
    } finally {
      submit.disabled = false;
    }
  });
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && classifier?.layer.painting) classifier.layer.setPainting(false);
  });
}

const analysisPanel = document.getElementById('analysis-panel');
if (analysisPanel && window.tilescopeStarted) {
  window.tilescopeStarted.then((state) => setUpAnalysis(state, analysisPanel)).catch(() => {});
}
