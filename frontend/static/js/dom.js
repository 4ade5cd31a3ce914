// Building DOM nodes without innerHTML: h('a', { href, class: 'x', hidden: false }, 'text', child).

/** An element with attributes (false/null/undefined ones left out, true ones empty) and children (null/false skipped). */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value == null) continue;
    if (key === 'class') element.className = value;
    else element.setAttribute(key, value === true ? '' : value);
  }
  element.append(...children.filter((child) => child != null && child !== false));
  return element;
}
