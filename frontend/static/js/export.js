// "Download this view": the visible region rendered by the server's IIIF endpoint at screen resolution, as PNG.
export function visibleRegion(viewer, info) {
  const bounds = viewer.viewport.viewportToImageRectangle(viewer.viewport.getBounds(true));
  const x = Math.max(0, Math.floor(bounds.x)), y = Math.max(0, Math.floor(bounds.y));
  const width = Math.min(info.width, Math.ceil(bounds.x + bounds.width)) - x;
  const height = Math.min(info.height, Math.ceil(bounds.y + bounds.height)) - y;
  return width > 0 && height > 0 ? { x, y, width, height } : null;
}

export function exportUrl(viewer, info, iiifBase) {
  const region = visibleRegion(viewer, info);
  if (!region) return null;
  const container = viewer.container.getBoundingClientRect();
  const scale = window.devicePixelRatio || 1;
  const maxW = Math.round(container.width * scale), maxH = Math.round(container.height * scale);
  const fits = region.width <= maxW && region.height <= maxH;
  const size = fits ? 'max' : `!${maxW},${maxH}`;
  return `${iiifBase}/${region.x},${region.y},${region.width},${region.height}/${size}/0/default.png`;
}
