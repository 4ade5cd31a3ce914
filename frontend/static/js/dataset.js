// Dataset page: while the dataset converts, poll its status and progress, then reload to show the result.
const root = document.getElementById('dataset');
const POLL_MS = 1000;

async function poll() {
  const response = await fetch(root.dataset.api, { headers: { Accept: 'application/json' } });
  if (!response.ok) return setTimeout(poll, POLL_MS * 5);
  const dataset = await response.json();
  if (dataset.status === 'ready' || dataset.status === 'failed') {
    window.location.reload();
    return;
  }
  const job = dataset.job;
  document.getElementById('status').textContent = dataset.status;
  if (job) {
    document.getElementById('job-progress').value = job.progress;
    document.getElementById('job-message').textContent =
      `${job.message || job.status} — ${Math.round(100 * job.progress)} %`;
  }
  setTimeout(poll, POLL_MS);
}

if (root && (root.dataset.status === 'uploaded' || root.dataset.status === 'converting')) poll();
