// A scale bar in physical units (or pixels when the image has no pixel size) that follows the zoom.
const NICE_STEPS = [1, 2, 5];
const UNIT_SYMBOLS = { micrometer: 'µm', nanometer: 'nm', millimeter: 'mm', centimeter: 'cm', meter: 'm', angstrom: 'Å' };
const MAX_BAR_PX = 120;

export function niceLength(maxValue) {
  const exponent = Math.floor(Math.log10(maxValue));
  let best = Math.pow(10, exponent);
  for (const step of NICE_STEPS) {
    const candidate = step * Math.pow(10, exponent);
    if (candidate <= maxValue) best = candidate;
  }
  return best;
}

export function addScaleBar(viewer, container, info) {
  const bar = document.createElement('div');
  bar.className = 'scalebar';
  bar.innerHTML = '<div class="label"></div><div class="bar"></div>';
  container.appendChild(bar);
  const pixelSize = info.pixel_size ? info.pixel_size[1] : 1;
  const unit = info.pixel_size ? (UNIT_SYMBOLS[info.unit] || info.unit || '') : 'px';
  const update = () => {
    const screenPerImagePixel = viewer.viewport.viewportToImageZoom(viewer.viewport.getZoom(true));
    const length = niceLength((MAX_BAR_PX / screenPerImagePixel) * pixelSize);
    bar.querySelector('.bar').style.width = `${(length / pixelSize) * screenPerImagePixel}px`;
    bar.querySelector('.label').textContent = `${length.toLocaleString()} ${unit}`;
  };
  for (const event of ['animation', 'open', 'resize']) viewer.addHandler(event, update);
}
