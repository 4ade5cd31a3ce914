// Project page: while any dataset converts, keep its status badge and progress current; reload when one finishes.
const list = document.getElementById('datasets');
const POLL_MS = 2000;
const busy = (status) => status === 'uploaded' || status === 'converting';

async function poll() {
  const response = await fetch(list.dataset.api, { headers: { Accept: 'application/json' } });
  if (!response.ok) return setTimeout(poll, POLL_MS * 5);
  const { datasets } = await response.json();
  let finished = false;
  for (const dataset of datasets) {
    const item = list.querySelector(`li[data-id="${dataset.id}"]`);
    if (!item) continue;
    if (busy(item.dataset.status) && !busy(dataset.status)) finished = true;
    const badge = item.querySelector('.status');
    const percent = dataset.job && busy(dataset.status) ? ` ${Math.round(100 * dataset.job.progress)} %` : '';
    badge.textContent = dataset.status + percent;
    badge.className = `status status-${dataset.status}`;
  }
  if (finished) window.location.reload();
  else if (datasets.some((d) => busy(d.status))) setTimeout(poll, POLL_MS);
}

if (list && [...list.querySelectorAll('li')].some((item) => busy(item.dataset.status))) setTimeout(poll, POLL_MS);
