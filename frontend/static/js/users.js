// The admins' users page: list users, create one, reset a password (each shown once), (de)activate, grant/revoke admin.
import { sendJson as send } from './csrf.js';
import { h } from './dom.js';

const root = document.getElementById('users');
const tbody = document.querySelector('#users-table tbody');
const pageStatus = document.getElementById('users-status');
const once = document.getElementById('password-once');
const state = { users: [] };
window.tilescopeUsers = state; // for tests: the users as last loaded

const day = (iso) => (iso ? new Date(iso).toLocaleDateString([], { dateStyle: 'medium' }) : '');
const moment = (iso) => (iso ? new Date(iso).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' }) : 'never');

const sentence = (text) => (text ? text.charAt(0).toUpperCase() + text.slice(1) + (/[.!?]$/.test(text) ? '' : '.') : '');

function say(element, text, bad = false) {
  element.textContent = text;
  element.classList.toggle('bad', bad);
  element.classList.toggle('ok', !bad);
  element.hidden = !text;
}

function showPassword(user, password, what) {
  document.getElementById('password-once-text').textContent = `${what} for ${user.email}:`;
  document.getElementById('password-once-value').value = password;
  once.hidden = false;
  once.scrollIntoView({ block: 'nearest' });
  document.getElementById('password-once-value').select();
}

document.getElementById('password-once-copy').addEventListener('click', async () => {
  const input = document.getElementById('password-once-value');
  input.select();
  try { await navigator.clipboard.writeText(input.value); } catch { document.execCommand?.('copy'); }
});
document.getElementById('password-once-close').addEventListener('click', () => {
  document.getElementById('password-once-value').value = '';
  once.hidden = true;
});

async function change(user, body, done) {
  const { ok, status, data } = await send(`${root.dataset.api}/${user.id}`, 'PATCH', body);
  if (!ok) { say(pageStatus, sentence(data.error) || `The change failed (${status}).`, true); return; }
  say(pageStatus, done(data));
  await load();
}

async function resetPassword(user) {
  if (!window.confirm(`Give ${user.email} a new generated password? They are logged out everywhere.`)) return;
  const { ok, status, data } = await send(`${root.dataset.api}/${user.id}/password`, 'POST');
  if (!ok) { say(pageStatus, sentence(data.error) || `The reset failed (${status}).`, true); return; }
  say(pageStatus, '');
  showPassword(user, data.password, 'New password');
}

function actions(user) {
  const button = (label, action, handler, cls = '') => {
    const b = h('button', { type: 'button', class: `small-button ${cls}`.trim(), 'data-action': action }, label);
    b.addEventListener('click', async () => { b.disabled = true; await handler(); b.disabled = false; });
    return b;
  };
  const you = user.is_you;
  return h('div', { class: 'user-actions' },
    you ? null : button('Reset password', 'reset', () => resetPassword(user)),
    you ? null : user.is_admin
      ? button('Remove admin', 'revoke-admin', () => change(user, { is_admin: false }, () => `${user.email} is no longer an admin.`))
      : button('Make admin', 'grant-admin', () => change(user, { is_admin: true }, () => `${user.email} is now an admin.`)),
    you ? h('span', { class: 'muted small' }, 'you — see ', h('a', { href: root.dataset.account }, 'your account'))
      : user.is_active
        ? button('Deactivate', 'deactivate', () => {
          if (!window.confirm(`Deactivate ${user.email}? They are logged out everywhere and cannot log in.`)) return null;
          return change(user, { is_active: false }, (d) => `${user.email} is deactivated${d.sessions_ended ? ` and was logged out of ${d.sessions_ended} session(s)` : ''}.`);
        }, 'danger')
        : button('Reactivate', 'reactivate', () => change(user, { is_active: true }, () => `${user.email} may log in again.`)));
}

function row(user) {
  const who = h('td', { class: 'user-who' }, h('span', { class: 'user-email' }, user.email),
    user.name ? h('span', { class: 'muted small user-name' }, user.name) : null);
  return h('tr', { 'data-id': user.id, 'data-email': user.email, class: user.is_active ? '' : 'inactive' }, who,
    h('td', { class: 'badge-cell' }, user.is_admin ? h('span', { class: 'status status-running' }, 'admin') : h('span', { class: 'muted not-admin', title: 'not an admin' }, '—')),
    h('td', { class: 'badge-cell' }, user.is_active ? h('span', { class: 'status status-ready' }, 'active') : h('span', { class: 'status status-failed' }, 'deactivated')),
    h('td', { class: 'nowrap', 'data-label': 'Last login' }, moment(user.last_login_at)),
    h('td', { class: 'nowrap', 'data-label': 'Created' }, day(user.created_at)),
    h('td', { class: 'actions-cell' }, actions(user)));
}

async function load() {
  const response = await fetch(root.dataset.api, { headers: { Accept: 'application/json' } });
  if (!response.ok) { say(pageStatus, `Could not load the users (${response.status}).`, true); return; }
  state.users = (await response.json()).users;
  tbody.replaceChildren(...state.users.map(row));
}

const form = document.getElementById('new-user');
const formStatus = document.getElementById('new-user-status');
form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const email = form.elements.email.value.trim();
  if (!email) { say(formStatus, 'Enter the email the user will log in with.', true); form.elements.email.focus(); return; }
  const button = form.querySelector('button[type=submit]');
  button.disabled = true;
  const { ok, status, data } = await send(form.dataset.api, 'POST',
    { email, name: form.elements.name.value.trim(), is_admin: form.elements.is_admin.checked });
  button.disabled = false;
  if (!ok) { say(formStatus, sentence(data.error) || `Creating the user failed (${status}).`, true); return; }
  form.reset();
  say(formStatus, `Created ${data.user.email}.`);
  showPassword(data.user, data.password, 'Password');
  await load();
});

load();
