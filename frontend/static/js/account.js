// The account page: change your own password, list your login sessions and log out the others.
import { sendJson as send } from './csrf.js';
import { h } from './dom.js';

const when = (iso) => (iso ? new Date(iso).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' }) : '');

/** "Firefox on Linux" from a user-agent string (the whole string stays in the tooltip). */
export function browserName(agent) {
  if (!agent) return 'Unknown browser';
  const browsers = [['Edg/', 'Edge'], ['OPR/', 'Opera'], ['Firefox/', 'Firefox'], ['Chromium/', 'Chromium'],
    ['Chrome/', 'Chrome'], ['Safari/', 'Safari']];
  const systems = [['iPhone', 'iPhone'], ['iPad', 'iPad'], ['Android', 'Android'], ['Windows', 'Windows'],
    ['Mac OS X', 'macOS'], ['CrOS', 'ChromeOS'], ['Linux', 'Linux']];
  const browser = browsers.find(([mark]) => agent.includes(mark));
  const system = systems.find(([mark]) => agent.includes(mark));
  if (!browser && !system) return agent.split(/[\s/]/)[0] || 'Unknown browser';
  return [browser ? browser[1] : 'A browser', system ? `on ${system[1]}` : ''].join(' ').trim();
}

function say(element, text, bad = false) {
  element.textContent = text;
  element.classList.toggle('bad', bad);
  element.classList.toggle('ok', !bad);
  element.hidden = !text;
}

const box = document.getElementById('sessions');
const list = document.getElementById('session-list');
const note = document.getElementById('sessions-note');
const endOthers = document.getElementById('end-others');

function sessionRow(session) {
  const title = h('span', { class: 'session-title', title: session.user_agent || '' }, browserName(session.user_agent));
  const head = h('div', { class: 'session-head' }, title,
    session.current ? h('span', { class: 'status status-running' }, 'this browser') : null);
  const active = session.current ? 'active now'
    : session.last_seen_at && session.last_seen_at !== session.created_at ? `last active ${when(session.last_seen_at)}` : '';
  const facts = [`logged in ${when(session.created_at)}`, active, session.remote_addr ? `from ${session.remote_addr}` : ''];
  return h('li', { class: 'session', 'data-id': session.id, 'data-current': session.current ? 'true' : 'false' },
    head, h('p', { class: 'muted small' }, facts.filter(Boolean).join(' · ')));
}

async function loadSessions() {
  const response = await fetch(box.dataset.api, { headers: { Accept: 'application/json' } });
  if (!response.ok) { say(note, `Could not load your sessions (${response.status}).`, true); return; }
  const { sessions } = await response.json();
  list.replaceChildren(...sessions.map(sessionRow));
  const others = sessions.filter((s) => !s.current).length;
  note.classList.remove('bad');
  note.textContent = others ? `${others} other browser${others > 1 ? 's' : ''} or device${others > 1 ? 's' : ''} logged in as you.`
    : 'Only this browser is logged in as you.';
  endOthers.hidden = others === 0;
}

endOthers.addEventListener('click', async () => {
  endOthers.disabled = true;
  const { ok, status, data } = await send(box.dataset.endOthers, 'POST');
  endOthers.disabled = false;
  if (!ok) { say(note, data.error || `Logging out failed (${status}).`, true); return; }
  await loadSessions();
  note.textContent = `Logged out ${data.ended} other session${data.ended === 1 ? '' : 's'}. ${note.textContent}`;
});

const form = document.getElementById('password-form');
const status = document.getElementById('password-status');

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const fields = Object.fromEntries(new FormData(form));
  const min = Number(form.elements.new_password.minLength) || 8;
  if (!fields.current_password) { say(status, 'Enter your current password.', true); form.elements.current_password.focus(); return; }
  if (fields.new_password.length < min) { say(status, `The new password needs at least ${min} characters.`, true); form.elements.new_password.focus(); return; }
  if (fields.new_password !== fields.repeat_password) { say(status, 'The new password and its repetition differ.', true); form.elements.repeat_password.focus(); return; }
  const button = form.querySelector('button[type=submit]');
  button.disabled = true;
  const { ok, status: code, data } = await send(form.dataset.api, 'POST', fields);
  button.disabled = false;
  if (!ok) {
    const message = data.error || `Changing the password failed (${code}).`;
    say(status, message.charAt(0).toUpperCase() + message.slice(1) + (message.endsWith('.') ? '' : '.'), true);
    if (/current/.test(message)) form.elements.current_password.select();
    return;
  }
  form.reset();
  const ended = data.sessions_ended;
  say(status, `Password changed.${ended ? ` ${ended} other session${ended === 1 ? ' was' : 's were'} logged out.` : ''}`);
  loadSessions();
});

loadSessions();
