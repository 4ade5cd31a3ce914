// The CSRF token of this page, for JavaScript requests that change state.
export const csrfToken = () => document.querySelector('meta[name="csrf-token"]').content;

/** A JSON request with this page's CSRF token: {ok, status, data} (data {} when the answer is not JSON). */
export async function sendJson(url, method, body) {
  const response = await fetch(url, {
    method,
    headers: { 'X-CSRFToken': csrfToken(), Accept: 'application/json', 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  return { ok: response.ok, status: response.status, data };
}
