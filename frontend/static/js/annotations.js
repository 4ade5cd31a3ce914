// Tabs of the annotations partial, and every form or button that writes research data through the JSON API.
// Data from the server is only ever put into the page with textContent, never as HTML.
import { csrfToken } from './csrf.js';

const statusLine = (element) =>
  element.closest('#annotations, main')?.querySelector('[data-annotation-status], [data-form-status]');

function showError(element, message) {
  const line = statusLine(element);
  if (line) line.textContent = message;
  else window.alert(message);
}

async function send(url, method, body, element) {
  const headers = { 'X-CSRFToken': csrfToken(), Accept: 'application/json' };
  if (!(body instanceof FormData)) headers['Content-Type'] = 'application/json';
  const response = await fetch(url, {
    method, headers, credentials: 'same-origin',
    body: body instanceof FormData ? body : JSON.stringify(body ?? {}),
  });
  if (response.ok) return response;
  let message = `${response.status} ${response.statusText}`;
  try { message = (await response.json()).error || message; } catch { /* not JSON */ }
  showError(element, message);
  return null;
}

function setUpTabs(root) {
  const buttons = [...root.querySelectorAll('[data-tab]')];
  const panels = [...root.querySelectorAll('[data-panel]')];
  const choose = (name) => {
    buttons.forEach((b) => b.setAttribute('aria-selected', String(b.dataset.tab === name)));
    panels.forEach((p) => { p.hidden = p.dataset.panel !== name; });
  };
  buttons.forEach((b) => b.addEventListener('click', () => {
    choose(b.dataset.tab);
    history.replaceState(null, '', `#${b.dataset.tab}`);
  }));
  const wanted = window.location.hash.slice(1);
  choose(buttons.some((b) => b.dataset.tab === wanted) ? wanted : buttons[0]?.dataset.tab);
}

// <form data-json-api="/api/v1/…" data-method="POST|PATCH">: its named fields as a JSON object.
document.querySelectorAll('form[data-json-api]').forEach((form) => form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const body = Object.fromEntries(new FormData(form).entries());
  delete body.csrf_token;
  const response = await send(form.dataset.jsonApi, form.dataset.method || 'POST', body, form);
  if (response) {
    const next = form.dataset.next;
    if (next === 'created') window.location.assign((await response.json()).url);
    else window.location.reload();
  }
}));

// <form data-upload-api="…/attachments">: a multipart upload.
document.querySelectorAll('form[data-upload-api]').forEach((form) => form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const button = form.querySelector('button[type="submit"]');
  button.disabled = true;
  const response = await send(form.dataset.uploadApi, 'POST', new FormData(form), form);
  button.disabled = false;
  if (response) window.location.reload();
}));

// <button data-delete="/api/v1/…">: asks for a reason, which the audit trail keeps.
document.querySelectorAll('button[data-delete]').forEach((button) => button.addEventListener('click', async () => {
  const reason = window.prompt('Delete — reason (kept in the history):', '');
  if (reason === null) return;
  const response = await send(button.dataset.delete, 'DELETE', { reason }, button);
  if (response) {
    if (button.dataset.next) window.location.assign(button.dataset.next);
    else window.location.reload();
  }
}));

const root = document.getElementById('annotations');
if (root) setUpTabs(root);
