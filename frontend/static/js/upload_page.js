// The upload page: files and folders sent with tus-js-client (resumable), a progress bar per file and overall,
// pause/resume, and links to the datasets they became. A dropped folder is one group: one volume dataset.
import { csrfToken } from './csrf.js';

const page = document.getElementById('upload-page');
const CHUNK_BYTES = 8 * 1024 * 1024;
const PARALLEL = 3;
const entries = [];
let paused = false;

// A short stable hash (FNV-1a), so that the group id of a folder is the same after a page reload.
function stableHash(text) {
  let h1 = 0x811c9dc5, h2 = 0x01000193;
  for (let i = 0; i < text.length; i++) {
    h1 = Math.imul(h1 ^ text.charCodeAt(i), 16777619) >>> 0;
    h2 = Math.imul(h2 ^ text.charCodeAt(i), 2246822519) >>> 0;
  }
  return h1.toString(16).padStart(8, '0') + h2.toString(16).padStart(8, '0');
}

function formatBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

// Walk a dropped folder (FileSystemEntry) into [file, relativePath] pairs.
async function walk(entry, prefix = '') {
  if (entry.isFile) {
    const file = await new Promise((ok, fail) => entry.file(ok, fail));
    return [[file, prefix + entry.name]];
  }
  const reader = entry.createReader();
  const children = [];
  for (;;) {
    const batch = await new Promise((ok, fail) => reader.readEntries(ok, fail));
    if (!batch.length) break;
    children.push(...batch);
  }
  const nested = await Promise.all(children.map((child) => walk(child, `${prefix}${entry.name}/`)));
  return nested.flat();
}

// Pairs of [file, relativePath] grouped: files alone, and one group per top-level folder.
function addBatch(pairs) {
  const folders = new Map();
  for (const [file, path] of pairs) {
    if (file.name.startsWith('.')) continue;
    const top = path.includes('/') ? path.split('/')[0] : null;
    if (top === null) { addEntry(file, path, null); continue; }
    if (!folders.has(top)) folders.set(top, []);
    folders.get(top).push([file, path]);
  }
  for (const [top, files] of folders) {
    files.sort((a, b) => a[1].localeCompare(b[1], undefined, { numeric: true }));
    const listing = files.map(([f, p]) => `${p}:${f.size}:${f.lastModified}`).join('\n');
    const group = { id: stableHash(`${page.dataset.project}\n${top}\n${listing}`), name: top, size: files.length };
    for (const [file, path] of files) addEntry(file, path, group);
  }
  pump();
}

function addEntry(file, relativePath, group) {
  const row = document.createElement('li');
  row.className = 'upload-row';
  row.innerHTML = `<div class="upload-name"></div><progress max="1" value="0"></progress>
    <div class="upload-state small" role="status">waiting</div><button type="button" class="upload-toggle">Pause</button>`;
  row.querySelector('.upload-name').textContent = group ? relativePath : file.name;
  document.getElementById('upload-list').append(row);
  const entry = { file, relativePath, group, row, sent: 0, state: 'waiting', upload: null };
  row.querySelector('.upload-toggle').addEventListener('click', () => toggle(entry));
  entries.push(entry);
  if (file.size > Number(page.dataset.maxBytes)) fail(entry, `larger than the limit of ${formatBytes(Number(page.dataset.maxBytes))}`);
  refresh();
}

function setState(entry, state, text) {
  entry.state = state;
  entry.row.dataset.state = state;
  entry.row.querySelector('.upload-state').textContent = text;
  entry.row.querySelector('.upload-toggle').textContent = state === 'paused' ? 'Resume' : 'Pause';
  entry.row.querySelector('.upload-toggle').style.display = ['done', 'failed', 'waiting-group'].includes(state) ? 'none' : '';
  refresh();
}

function fail(entry, message) { setState(entry, 'failed', `Failed: ${message}`); }

function start(entry) {
  const metadata = { filename: entry.file.name, name: entry.group ? entry.group.name : '' };
  if (entry.group) Object.assign(metadata, { group: entry.group.id, groupSize: String(entry.group.size), relativePath: entry.relativePath });
  const upload = new window.tus.Upload(entry.file, {
    endpoint: page.dataset.endpoint,
    chunkSize: CHUNK_BYTES,
    retryDelays: [0, 1000, 3000, 5000, 10000, 20000],
    headers: { 'X-CSRFToken': csrfToken() },
    metadata,
    removeFingerprintOnSuccess: true,
    fingerprint: async (file) => ['tilescope', page.dataset.endpoint, entry.group ? entry.group.id : '', entry.relativePath,
      file.size, file.lastModified].join('|'),
    onProgress: (sent, total) => {
      entry.sent = sent;
      entry.row.querySelector('progress').value = total ? sent / total : 1;
      setState(entry, 'uploading', `${formatBytes(sent)} of ${formatBytes(total)}`);
    },
    onSuccess: () => finished(entry),
    onError: (error) => {
      const body = error.originalResponse ? error.originalResponse.getBody() : '';
      let reason = error.message;
      try { reason = JSON.parse(body).error || reason; } catch { /* not JSON */ }
      if (!navigator.onLine) { setState(entry, 'paused', 'Connection lost: resumes when back online'); entry.offline = true; } else fail(entry, reason);
      pump();
    },
  });
  entry.upload = upload;
  setState(entry, 'uploading', 'starting…');
  upload.findPreviousUploads().then((previous) => {
    if (previous.length) upload.resumeFromPreviousUpload(previous[0]);
    upload.start();
  });
}

async function finished(entry) {
  entry.sent = entry.file.size;
  entry.row.querySelector('progress').value = 1;
  const response = await fetch(entry.upload.url, { headers: { Accept: 'application/json' } });
  const body = await response.json();
  if (body.error) fail(entry, body.error);
  else if (body.dataset_id) showDataset(entry.group ? entries.filter((e) => e.group && e.group.id === entry.group.id) : [entry], body);
  else setState(entry, 'waiting-group', 'uploaded; waiting for the rest of the folder');
  pump();
}

function showDataset(group, body) {
  for (const entry of group) {
    entry.sent = entry.file.size;
    entry.row.querySelector('progress').value = 1;
    setState(entry, 'done', '');
    const state = entry.row.querySelector('.upload-state');
    const link = document.createElement('a');
    link.href = body.dataset_url;
    link.className = 'dataset-link';
    link.textContent = `Open dataset “${body.dataset_name}” (${body.dataset_status})`;
    state.replaceChildren('Done · ', link);
  }
}

function toggle(entry) {
  if (entry.state === 'uploading') { entry.upload.abort(); setState(entry, 'paused', 'paused'); pump(); return; }
  if (entry.state === 'paused') { entry.offline = false; entry.upload ? (entry.upload.start(), setState(entry, 'uploading', 'resuming…')) : setState(entry, 'waiting', 'waiting'); }
  pump();
}

// Keep PARALLEL uploads running.
function pump() {
  if (paused) return;
  let running = entries.filter((e) => e.state === 'uploading').length;
  for (const entry of entries) {
    if (running >= PARALLEL) break;
    if (entry.state === 'waiting') { start(entry); running++; }
  }
}

function refresh() {
  const total = entries.reduce((sum, e) => sum + (e.state === 'failed' ? 0 : e.file.size), 0);
  const sent = entries.reduce((sum, e) => sum + (e.state === 'failed' ? 0 : e.sent), 0);
  const done = entries.filter((e) => e.state === 'done').length;
  document.getElementById('upload-overall').hidden = entries.length === 0;
  const active = entries.some((e) => ['waiting', 'uploading', 'paused'].includes(e.state));
  document.getElementById('pause-all').style.display = active || paused ? '' : 'none';
  document.getElementById('overall-progress').value = total ? sent / total : 0;
  document.getElementById('overall-text').textContent =
    `${done} of ${entries.length} files done · ${formatBytes(sent)} of ${formatBytes(total)}`;
}

if (page) {
  const zone = document.getElementById('drop-zone');
  zone.addEventListener('dragover', (event) => { event.preventDefault(); zone.classList.add('dragging'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('dragging'));
  zone.addEventListener('drop', async (event) => {
    event.preventDefault();
    zone.classList.remove('dragging');
    const items = [...event.dataTransfer.items].map((item) => item.webkitGetAsEntry && item.webkitGetAsEntry()).filter(Boolean);
    if (items.length) addBatch((await Promise.all(items.map((item) => walk(item)))).flat());
    else addBatch([...event.dataTransfer.files].map((file) => [file, file.name]));
  });
  for (const id of ['pick-files', 'pick-folder']) {
    document.getElementById(id).addEventListener('change', (event) => {
      addBatch([...event.target.files].map((file) => [file, file.webkitRelativePath || file.name]));
      event.target.value = '';
    });
  }
  document.getElementById('pause-all').addEventListener('click', (event) => {
    paused = !paused;
    event.target.textContent = paused ? 'Resume all' : 'Pause';
    for (const entry of entries) {
      if (paused && entry.state === 'uploading') { entry.upload.abort(); setState(entry, 'paused', 'paused'); }
      if (!paused && entry.state === 'paused') toggle(entry);
    }
    pump();
  });
  window.addEventListener('online', () => { for (const e of entries) if (e.offline) toggle(e); });
  window.tilescopeUploads = entries;
}
