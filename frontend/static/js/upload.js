// Upload form: sends the file to the JSON API with a progress bar, then opens the new dataset's page.
import { csrfToken } from './csrf.js';

const form = document.getElementById('upload-form');
if (form) {
  const progress = document.getElementById('upload-progress');
  const status = document.getElementById('upload-status');
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const xhr = new XMLHttpRequest();
    xhr.open('POST', form.dataset.api);
    xhr.setRequestHeader('X-CSRFToken', csrfToken());
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.addEventListener('progress', (e) => {
      if (!e.lengthComputable) return;
      progress.value = e.loaded / e.total;
      status.textContent = `Uploading… ${Math.round(100 * e.loaded / e.total)} %`;
    });
    xhr.addEventListener('load', () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status === 202 && body.url) {
        status.textContent = 'Uploaded. Converting…';
        window.location.assign(body.url);
      } else {
        form.querySelector('button').disabled = false;
        progress.hidden = true;
        status.textContent = `Upload failed: ${body.error || xhr.statusText || xhr.status}`;
        status.className = 'small flash error';
      }
    });
    xhr.addEventListener('error', () => {
      form.querySelector('button').disabled = false;
      status.textContent = 'Upload failed: the connection was lost.';
      status.className = 'small flash error';
    });
    form.querySelector('button').disabled = true;
    progress.hidden = false;
    status.className = 'small';
    xhr.send(new FormData(form));
  });
}
