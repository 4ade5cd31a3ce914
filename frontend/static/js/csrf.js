// The CSRF token of this page, for JavaScript requests that change state.
export const csrfToken = () => document.querySelector('meta[name="csrf-token"]').content;
