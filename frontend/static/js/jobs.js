// Jobs pages: the list (live progress, queue position, ETA, resource use, cancel/retry) and one job, polled every 2 s.
import { csrfToken } from './csrf.js';
import { h } from './dom.js';

const POLL_MS = 2000;
const FINAL = new Set(['finished', 'failed', 'cancelled']);
const state = { polls: 0 };
window.tilescopeJobs = state; // for tests: how many polls have been rendered

export function duration(seconds) {
  if (seconds == null) return '';
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

const megabytes = (bytes) => (bytes ? `${Math.round(bytes / 1e6).toLocaleString()} MB peak` : '');
const when = (iso) => (iso ? new Date(iso).toLocaleString([], { dateStyle: 'short', timeStyle: 'short' }) : '');
const percent = (job) => `${Math.round(100 * job.progress)} %`;

/** One line saying where the job stands: its place in the queue, or its progress, with an estimate. */
export function progressLine(job) {
  if (job.status === 'queued') {
    const eta = job.eta_seconds != null ? ` · done in about ${duration(job.eta_seconds)}` : '';
    return `position ${job.position ?? '?'} in the ${job.queue} queue${eta}`;
  }
  if (job.status === 'running') {
    const eta = job.eta_seconds != null ? ` · about ${duration(job.eta_seconds)} left` : '';
    const stopping = job.cancel_requested ? ' · cancelling…' : '';
    return `${job.message || 'running'} — ${percent(job)}${eta}${stopping}`;
  }
  return job.message || job.status;
}

/** Run time, CPU time, peak memory, host and attempts, as far as they are known. */
export function resourceLine(job) {
  const parts = [];
  if (job.wall_seconds != null) parts.push(`ran ${duration(job.wall_seconds)}`);
  if (job.cpu_seconds != null) parts.push(`CPU ${duration(job.cpu_seconds)}`);
  if (job.peak_rss_bytes) parts.push(megabytes(job.peak_rss_bytes));
  if (job.host) parts.push(job.host);
  if (job.attempts > 1 || job.max_attempts > 1) parts.push(`attempt ${job.attempts} of ${job.max_attempts}`);
  return parts.join(' · ');
}

async function act(job, action, report) {
  report('');
  const response = await fetch(`${job.api}/${action}`, {
    method: 'POST', headers: { 'X-CSRFToken': csrfToken(), Accept: 'application/json' },
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    report(body.error || `${action} failed (${response.status})`, true);
    return null;
  }
  return body;
}

function actions(job, onDone, report) {
  const box = h('div', { class: 'job-actions' });
  if (job.can_cancel) {
    const button = h('button', { type: 'button', 'data-action': 'cancel' }, 'Cancel');
    button.addEventListener('click', async () => { button.disabled = true; await act(job, 'cancel', report); onDone(); });
    box.append(button);
  }
  if (job.can_retry) {
    const button = h('button', { type: 'button', class: 'primary', 'data-action': 'retry' }, 'Retry');
    button.addEventListener('click', async () => { button.disabled = true; await act(job, 'retry', report); onDone(); });
    box.append(button);
  }
  return box.children.length ? box : null;
}

function jobRow(job, refresh) {
  const note = h('p', { class: 'job-note small', role: 'status' });
  const report = (text, bad) => { note.textContent = text; note.classList.toggle('bad', Boolean(bad)); };
  const title = job.dataset_name ? `${job.kind} · ${job.dataset_name}` : job.kind;
  const meta = [job.project && job.project.name, job.user && job.user.name, when(job.created_at)].filter(Boolean).join(' · ');
  const busy = !FINAL.has(job.status);
  return h('li', { class: 'card job-row', 'data-id': job.id, 'data-status': job.status },
    h('div', { class: 'job-head' },
      h('a', { class: 'job-title', href: job.url }, title),
      h('span', { class: `status status-${job.status}` }, job.status)),
    h('p', { class: 'job-meta muted small' }, meta),
    busy && h('progress', { class: 'job-progress', max: '1', value: String(job.progress) }),
    h('p', { class: 'job-line small' }, progressLine(job)),
    job.error && h('p', { class: 'job-error' }, job.error),
    resourceLine(job) && h('p', { class: 'job-resources muted small' }, resourceLine(job)),
    job.result_url && h('p', { class: 'small' }, h('a', { href: job.result_url }, 'Open the result →')),
    actions(job, refresh, report),
    note);
}

function listPage(root) {
  const list = document.getElementById('job-list');
  const empty = document.getElementById('jobs-empty');
  const shown = new Map(); // job id → JSON last rendered, so unchanged rows (and their focus) stay put
  let timer = null;

  async function refresh() {
    clearTimeout(timer);
    try {
      const query = new URLSearchParams({ limit: '100' });
      if (root.dataset.status) query.set('status', root.dataset.status);
      const response = await fetch(`${root.dataset.api}?${query}`, { headers: { Accept: 'application/json' } });
      if (response.ok) render((await response.json()).jobs);
    } finally {
      clearTimeout(timer);
      timer = setTimeout(refresh, POLL_MS);
    }
  }

  function render(jobs) {
    const rows = jobs.map((job) => {
      const json = JSON.stringify(job);
      const existing = list.querySelector(`li[data-id="${CSS.escape(job.id)}"]`);
      if (existing && shown.get(job.id) === json) return existing;
      shown.set(job.id, json);
      return jobRow(job, refresh);
    });
    list.replaceChildren(...rows);
    empty.hidden = jobs.length > 0;
    state.polls += 1;
  }

  refresh();
}

function detailPage(root) {
  const $ = (id) => document.getElementById(id);
  let timer = null;
  const report = (text, bad) => { $('job-action-status').textContent = text; $('job-action-status').classList.toggle('bad', Boolean(bad)); };

  async function refresh() {
    clearTimeout(timer);
    const response = await fetch(root.dataset.api, { headers: { Accept: 'application/json' } });
    if (!response.ok) { timer = setTimeout(refresh, POLL_MS * 5); return; }
    const job = await response.json();
    render(job);
    clearTimeout(timer);
    if (!FINAL.has(job.status)) timer = setTimeout(refresh, POLL_MS);
  }

  function render(job) {
    root.dataset.status = job.status;
    $('job-status').textContent = job.status;
    $('job-status').className = `status status-${job.status}`;
    $('job-message').textContent = job.status === 'running' ? `${job.message || 'running'} — ${percent(job)}` : (job.message || job.status);
    $('job-progress').value = job.progress;
    $('job-progress').hidden = FINAL.has(job.status);
    $('job-eta').textContent = job.status === 'queued' || job.status === 'running' ? progressLine(job) : resourceLine(job);
    $('job-error').textContent = job.error || '';
    $('job-error').hidden = !job.error;
    $('job-result').hidden = !job.result_url;
    if (job.result_url) $('job-result').querySelector('a').href = job.result_url;
    $('job-cancel').hidden = !job.can_cancel;
    $('job-retry').hidden = !job.can_retry;
    if ('traceback' in job && $('job-traceback')) {
      $('job-traceback').textContent = job.traceback || '';
      $('job-traceback-box').hidden = !job.traceback;
    }
    const facts = {
      created_at: when(job.created_at), started_at: when(job.started_at) || '—', finished_at: when(job.finished_at) || '—',
      timeout_seconds: duration(job.timeout_seconds) || '—',
      attempts: `${job.attempts} of ${job.max_attempts}`, host: job.host || '—',
      wall_seconds: duration(job.wall_seconds) || '—', cpu_seconds: duration(job.cpu_seconds) || '—',
      peak_rss_bytes: job.peak_rss_bytes ? `${Math.round(job.peak_rss_bytes / 1e6).toLocaleString()} MB` : '—',
    };
    for (const [field, text] of Object.entries(facts)) {
      const cell = root.querySelector(`[data-field="${field}"]`);
      if (cell) cell.textContent = text;
    }
    state.job = job;
    state.polls += 1;
  }

  $('job-cancel').addEventListener('click', async () => {
    $('job-cancel').disabled = true;
    await act({ api: root.dataset.api }, 'cancel', report);
    $('job-cancel').disabled = false;
    refresh();
  });
  $('job-retry').addEventListener('click', async () => {
    $('job-retry').disabled = true;
    const again = await act({ api: root.dataset.api }, 'retry', report);
    if (again) window.location.assign(again.url);
    else $('job-retry').disabled = false;
  });
  refresh();
}

const listRoot = document.getElementById('jobs');
const detailRoot = document.getElementById('job');
if (listRoot) listPage(listRoot);
else if (detailRoot) detailPage(detailRoot);
