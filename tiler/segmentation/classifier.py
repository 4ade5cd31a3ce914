"""Trainable pixel classifier: a random forest on multiscale features, trained on scribbles."""

from __future__ import annotations

import math
import numbers
import os
import pickle
import secrets
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations_with_replacement
from pathlib import Path
from typing import Any

import numpy
import sklearn
from skimage import feature, filters
from sklearn.ensemble import RandomForestClassifier

from tiler.errors import CorruptImage, InvalidParameter

__all__ = ["DEFAULT_FEATURES", "TrainedClassifier", "compute_features", "load_classifier",
           "save_classifier", "train_classifier", "validate_scribbles"]

#: Settings of skimage.feature.multiscale_basic_features (per sigma: smoothed intensity, Sobel
#: edges, ndim Hessian eigenvalues; sigmas: sigma_min * 2**k up to sigma_max), and the
#: ``window`` mapped to 0..1 in every block (None: the channel's display window).
DEFAULT_FEATURES: dict[str, Any] = dict(intensity=True, edges=True, texture=True, sigma_min=0.5,
                                        sigma_max=8.0, window=None)
SIGMA_LIMITS = (0.3, 16.0)  # level-0 pixels; 16 needs a halo of 66
GAUSSIAN_TRUNCATE, DERIVATIVE_REACH = 4.0, 2  # skimage gaussian's reach; np.gradient twice
MAX_CLASSES, MAX_SCRIBBLES, MAX_POINTS_PER_SCRIBBLE, RADIUS_LIMITS = 255, 200, 2000, (1, 64)
SAMPLES_PER_CLASS = 20_000  # most scribbled pixels per class trained on (sampled)
TRAINING_WINDOW = {2: 512, 3: 256}  # (y, x) side of the windows training reads, plus the halo
FOREST_TREES, FOREST_DEPTH, PREDICT_BATCH = 50, 16, 1 << 18  # batch: pixels predicted at once
PICKLE_PROTOCOL, FILE_FORMAT, FILE_VERSION = 5, "tilescope-pixel-classifier", 1


@dataclass
class TrainedClassifier:
    """A trained pixel classifier; ``halo``: the context a block needs on each side."""

    class_names: list[str]
    ndim: int
    halo: int
    features: dict
    model: RandomForestClassifier
    training_report: dict = field(default_factory=dict)
    channel: int = 0

    @property
    def bytes_per_voxel(self) -> int:
        """Peak memory classify_block needs per voxel of a block (measured, plus a margin)."""
        texture = self.features["texture"] * (200 if self.ndim == 3 else 48)
        return 4 * feature_count(self.features, self.ndim) + 32 + texture

    def classify_block(self, block: numpy.ndarray) -> numpy.ndarray:
        """Class index (uint8, 0 = class_names[0]) of every pixel of ``block``: one channel of
        level-0 pixels, (y, x) or (z, y, x), any numeric dtype, read ``halo`` pixels beyond the
        wanted region on every side, clipped to the image.  Crop the halo off the result."""
        block, axes = numpy.asarray(block), "(z, y, x)" if self.ndim == 3 else "(y, x)"
        _require(block.ndim == self.ndim, f"this classifier needs {axes} blocks; got a block "
                 f"of {block.ndim} dimensions")
        labels = numpy.zeros(block.shape, dtype=numpy.uint8)
        if block.size:
            values = compute_features(scale_intensities(block, self.features["window"]),
                                      self.features)
            values, flat = values.reshape(-1, values.shape[-1]), labels.reshape(-1)
            for start in range(0, flat.size, PREDICT_BATCH):
                flat[start:start + PREDICT_BATCH] = self.model.predict(
                    values[start:start + PREDICT_BATCH])
        return labels


def check_features(features: dict | None) -> dict:
    """DEFAULT_FEATURES updated with ``features``, checked; InvalidParameter says what is wrong."""
    _require(isinstance(features or {}, dict), "features must be an object of feature settings")
    unknown = ", ".join(sorted(map(repr, set(features or {}) - set(DEFAULT_FEATURES))))
    _require(not unknown, f"unknown feature setting {unknown}; valid settings are "
             f"{', '.join(DEFAULT_FEATURES)}")
    settings = {**DEFAULT_FEATURES, **(features or {})}
    for name in ("intensity", "edges", "texture"):
        _require(isinstance(settings[name], bool), f"feature setting {name} must be a boolean")
    _require(settings["intensity"] or settings["edges"] or settings["texture"],
             "at least one of the intensity, edges and texture features must be on")
    low, high = SIGMA_LIMITS
    for name in ("sigma_min", "sigma_max"):
        _require(_is_number(settings[name]) and low <= settings[name] <= high, f"{name} "
                 f"{settings[name]!r} is out of range; use a number from {low:g} to {high:g}")
        settings[name] = float(settings[name])
    _require(settings["sigma_min"] <= settings["sigma_max"], f"sigma_min "
             f"{settings['sigma_min']:g} is larger than sigma_max {settings['sigma_max']:g}")
    if (window := settings["window"]) is not None:
        _require(isinstance(window, Sequence) and len(window) == 2 and all(map(_is_number, window))
                 and window[0] < window[1],
                 f"window {window!r} must be two numbers [low, high] with low < high")
        settings["window"] = [float(window[0]), float(window[1])]
    return settings


def feature_sigmas(settings: dict) -> numpy.ndarray:
    """The Gaussian sigmas of ``settings``, exactly as multiscale_basic_features picks them."""
    low, high = settings["sigma_min"], settings["sigma_max"]
    count = int(numpy.log2(high) - numpy.log2(low) + 1)
    return numpy.logspace(numpy.log2(low), numpy.log2(high), num=count, base=2, endpoint=True)


def feature_count(settings: dict, ndim: int) -> int:
    """Features per pixel: intensity, edges and ndim texture maps, for each sigma."""
    kinds = settings["intensity"] + settings["edges"] + ndim * settings["texture"]
    return kinds * len(feature_sigmas(settings))


def feature_halo(settings: dict) -> int:
    """Context pixels a pixel's features depend on, on each side (Gaussian + derivatives)."""
    return int(GAUSSIAN_TRUNCATE * float(feature_sigmas(settings).max()) + 0.5) + DERIVATIVE_REACH


def scale_intensities(block: numpy.ndarray, window: Sequence[float]) -> numpy.ndarray:
    """``block`` as float32 with ``window`` mapped to 0..1; NaN becomes 0, extremes are capped."""
    scaled = (numpy.asarray(block, dtype=numpy.float64) - window[0]) / (window[1] - window[0])
    numpy.nan_to_num(scaled, copy=False, nan=0.0, posinf=1e6, neginf=-1e6)
    return numpy.clip(scaled, -1e6, 1e6, out=scaled).astype(numpy.float32)


def compute_features(image: numpy.ndarray, settings: dict, *,
                     keep_z: int | None = None) -> numpy.ndarray:
    """(..., F) float32 features of a float32 (y, x) or (z, y, x) image: exactly those of
    skimage.feature.multiscale_basic_features, one sigma at a time on one thread.  ``keep_z``:
    only that slice of a volume, as (1, y, x, F), derivatives taken on a thin slab around it."""
    shape = image.shape
    short = [(0, max(0, 2 - side)) for side in shape]  # np.gradient needs 2 pixels an axis
    image = numpy.pad(image, short, mode="edge") if any(pad for _, pad in short) else image
    out_shape = (1, *shape[1:]) if keep_z is not None else shape
    out = numpy.empty((*out_shape, feature_count(settings, image.ndim)), dtype=numpy.float32)
    crop, index = tuple(slice(0, side) for side in out_shape), 0
    for sigma in feature_sigmas(settings):
        smoothed, at = filters.gaussian(image, sigma=float(sigma), preserve_range=False), ...
        if keep_z is not None:
            first = max(0, keep_z - DERIVATIVE_REACH - 1)
            smoothed = smoothed[first:keep_z + DERIVATIVE_REACH + 2]
            at = slice(keep_z - first, keep_z - first + 1)
        maps = [smoothed[at]] if settings["intensity"] else []
        if settings["edges"]:
            maps.append(filters.sobel(smoothed)[at])
        if settings["texture"]:
            gradients = numpy.gradient(smoothed)
            maps.extend(feature.hessian_matrix_eigvals([numpy.gradient(gradients[a], axis=b)[at]
                for a, b in combinations_with_replacement(range(smoothed.ndim), 2)]))
        for values in maps:
            out[..., index], index = values[crop], index + 1
    return out


def validate_scribbles(raw_scribbles: Any, raw_class_names: Any, *, ndim: int,
                       shape_zyx_or_yx: Sequence[int]) -> tuple[list[dict], list[str]]:
    """Checked, normalised (scribbles, class_names), else InvalidParameter with the reason.

    A scribble: {"class": index into class_names, "points": [[x, y], ...] (a polyline in
    level-0 pixels; normalised to whole pixels), "radius": 1..64, "z": slice (volumes only)}.
    """
    shape = tuple(int(side) for side in shape_zyx_or_yx)[-ndim:] if ndim in (2, 3) else ()
    _require(len(shape) == ndim, f"shape {shape_zyx_or_yx} is not that of a {ndim!r}D image")
    _require(isinstance(raw_class_names, list | tuple) and all(
        isinstance(name, str) for name in raw_class_names), "class names must be a list of strings")
    names = [name.strip() for name in raw_class_names]
    _require(2 <= len(names) <= MAX_CLASSES, f"{len(names)} classes given; a classifier needs "
             f"2 to {MAX_CLASSES} classes (e.g. background and object)")
    for index, name in enumerate(names):
        _require(name, f"class {index} has no name")
        _require(name.casefold() not in [n.casefold() for n in names[:index]],
                 f"class name {name!r} is used twice (case is ignored)")
    _require(isinstance(raw_scribbles, list | tuple) and len(raw_scribbles),
             "no scribbles: paint at least one stroke for every class")
    _require(len(raw_scribbles) <= MAX_SCRIBBLES,
             f"{len(raw_scribbles)} scribbles given; at most {MAX_SCRIBBLES}")
    scribbles = [_check_scribble(f"scribble {number}", raw, len(names), shape)
                 for number, raw in enumerate(raw_scribbles)]
    missing = ", ".join(repr(name) for index, name in enumerate(names)
                        if all(scribble["class"] != index for scribble in scribbles))
    _require(not missing, f"class {missing} has no scribbles; paint at least one stroke for "
             "every class")
    return scribbles, names


def _check_scribble(where: str, raw: Any, classes: int, shape: tuple[int, ...]) -> dict:
    _require(isinstance(raw, dict), f"{where} is not an object with class, points and radius")
    label, points, radius, z = (raw.get(key) for key in ("class", "points", "radius", "z"))
    _require(_is_number(label, numbers.Integral) and 0 <= label < classes,
             f"{where}: class {label!r} is not a class index from 0 to {classes - 1}")
    _require(isinstance(points, list | tuple) and len(points) > 0, f"{where} has no points")
    _require(len(points) <= MAX_POINTS_PER_SCRIBBLE, f"{where} has {len(points)} points; at "
             f"most {MAX_POINTS_PER_SCRIBBLE} per scribble")
    height, width = shape[-2:]
    for index, point in enumerate(points):
        if not (isinstance(point, list | tuple) and len(point) == 2
                and all(map(_is_number, point))):
            raise InvalidParameter(f"{where} point {index} {point!r} is not an [x, y] pair")
        if not (0 <= point[0] < width and 0 <= point[1] < height):
            raise InvalidParameter(f"{where} point {index} (x={point[0]:g}, y={point[1]:g}) is "
                                   f"outside the image (0 <= x < {width}, 0 <= y < {height})")
    _require(_is_number(radius) and RADIUS_LIMITS[0] <= radius <= RADIUS_LIMITS[1], f"{where}: "
             f"radius {radius!r} must be a number from {RADIUS_LIMITS[0]} to {RADIUS_LIMITS[1]}")
    scribble = {"class": int(label), "radius": float(radius),
                "points": [[math.floor(x), math.floor(y)] for x, y in points]}
    if len(shape) == 3:
        _require(_is_number(z, numbers.Integral) or (isinstance(z, float) and z.is_integer()),
                 f"{where}: z {z!r} must be the whole number of the slice it was painted on")
        _require(0 <= z < shape[0],
                 f"{where}: slice z={int(z)} is outside the volume (0 <= z < {shape[0]})")
        scribble["z"] = int(z)
    else:
        _require(z in (None, 0), f"{where}: z={z!r} given, but a 2D image has no z axis")
    return scribble


def _require(condition: Any, message: str) -> None:
    if not condition:
        raise InvalidParameter(message)


def _is_number(value: Any, kind: type = numbers.Real) -> bool:
    return isinstance(value, kind) and not isinstance(value, bool) and (
        kind is numbers.Integral or math.isfinite(value))


def _pieces(scribble: dict, longest: float) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Starts and ends (y, x) of the scribble's polyline cut into pieces of at most ``longest``
    pixels (a dot: one piece of length 0)."""
    points = numpy.asarray(scribble["points"], dtype=numpy.float64)[:, ::-1]
    starts, ends = (points[:-1], points[1:]) if len(points) > 1 else (points, points)
    counts = numpy.maximum(1, numpy.ceil(numpy.hypot(*(ends - starts).T) / longest)).astype(int)
    owner = numpy.repeat(numpy.arange(len(starts)), counts)
    within = (numpy.arange(owner.size) - (numpy.cumsum(counts) - counts)[owner])[:, None]
    step = (ends - starts)[owner] / counts[owner, None]
    return starts[owner] + within * step, starts[owner] + (within + 1) * step


def _window_labels(touching: list[dict], y0: int, y1: int, x0: int, x1: int) -> numpy.ndarray:
    """Labels (0 = none, class + 1) the scribbles paint on [y0:y1, x0:x1], later ones on top."""
    labels = numpy.zeros((y1 - y0, x1 - x0), dtype=numpy.uint8)
    for scribble in touching:
        radius, (starts, ends) = scribble["radius"], _pieces(scribble, 2 * scribble["radius"] + 8)
        tops = numpy.maximum(numpy.floor(numpy.minimum(starts, ends) - radius), (y0, x0))
        bottoms = numpy.minimum(numpy.ceil(numpy.maximum(starts, ends) + radius) + 1, (y1, x1))
        for index in numpy.flatnonzero((tops < bottoms).all(axis=1)):
            (top, left), (bottom, right) = tops[index].astype(int), bottoms[index].astype(int)
            a, step = starts[index], ends[index] - starts[index]
            yy, xx = numpy.ogrid[top:bottom, left:right]
            along = ((yy - a[0]) * step[0] + (xx - a[1]) * step[1]) / max(step @ step, 1e-12)
            along = numpy.clip(along, 0.0, 1.0)
            near = (yy - a[0] - along * step[0]) ** 2 + (xx - a[1] - along * step[1]) ** 2
            labels[top - y0:bottom - y0, left - x0:right - x0][near <= radius * radius] = (
                scribble["class"] + 1)
    return labels


def _windows(scribbles: list[dict], shape: tuple[int, ...], side: int) -> list[tuple]:
    """Training windows: (key (z?, tile row, tile column), scribbles touching it, core box
    (y0, y1, x0, x1)); strokes are cut into half-window pieces to list only windows along them."""
    windows: dict[tuple, list[dict]] = {}
    for scribble in scribbles:
        a, b = _pieces(scribble, side / 2)
        low = numpy.maximum(numpy.minimum(a, b) - scribble["radius"], 0) // side
        high = numpy.minimum(numpy.maximum(a, b) + scribble["radius"],
                             numpy.subtract(shape[-2:], 1)) // side
        tiles = numpy.concatenate([numpy.minimum(low + (dy, dx), high)  # pieces span <= 2x2
                                   for dy in (0, 1) for dx in (0, 1)]).astype(int)
        plane = (scribble["z"],) if len(shape) == 3 else ()
        for row, col in numpy.unique(tiles, axis=0).tolist():
            windows.setdefault((*plane, row, col), []).append(scribble)
    return [(key, touching, (key[-2] * side, min(key[-2] * side + side, shape[-2]),
                             key[-1] * side, min(key[-1] * side + side, shape[-1])))
            for key, touching in sorted(windows.items())]


def _window_features(pyramid: Any, channel: int, key: tuple, core: tuple[int, int, int, int],
                     settings: dict, halo: int) -> numpy.ndarray:
    """(y, x, F) features of a window's ``core``, from its halo clipped to the image."""
    shape, (y0, y1, x0, x1) = pyramid.shape[1:], core
    box = (max(0, y0 - halo), min(shape[-2], y1 + halo), max(0, x0 - halo),
           min(shape[-1], x1 + halo))
    if pyramid.ndim == 2:
        pixels = pyramid.read_region(0, *box, channels=[channel])[0]
        values = compute_features(scale_intensities(pixels, settings["window"]), settings)
    else:
        first, last = max(0, key[0] - halo), min(shape[0], key[0] + halo + 1)
        pixels = numpy.stack([pyramid.read_plane(0, "xy", z, *box, channels=[channel])[0]
                              for z in range(first, last)])
        values = compute_features(scale_intensities(pixels, settings["window"]), settings,
                                  keep_z=key[0] - first)[0]
    return values[y0 - box[0]:y1 - box[0], x0 - box[2]:x1 - box[2]]


def _pixel_keys(indices: numpy.ndarray, seed: int) -> numpy.ndarray:
    """Pseudo-random uint64 keys (SplitMix64) of level-0 pixel indices, for sampling."""
    key = indices.astype(numpy.uint64) + numpy.uint64(seed * 0x9E3779B97F4A7C15 % 2**64)
    key = (key ^ (key >> numpy.uint64(30))) * numpy.uint64(0xBF58476D1CE4E5B9)
    key = (key ^ (key >> numpy.uint64(27))) * numpy.uint64(0x94D049BB133111EB)
    return key ^ (key >> numpy.uint64(31))


def train_classifier(pyramid: Any, scribbles: Any, class_names: Any, *, channel: int = 0,
                     features: dict | None = None, random_state: int = 0,
                     progress: Callable[[float, str], None] | None = None) -> TrainedClassifier:
    """Train a random forest on the scribbled pixels of ``pyramid`` (level 0, one channel),
    reading only windows around them and keeping at most SAMPLES_PER_CLASS pixels per class
    (sampled with ``random_state``): bounded memory; the same inputs give the same model."""
    report = progress or (lambda fraction, message: None)
    _require(_is_number(channel, numbers.Integral) and 0 <= channel < pyramid.shape[0],
             f"channel {channel!r} does not exist; valid channels are 0 to {pyramid.shape[0] - 1}")
    _require(_is_number(random_state, numbers.Integral) and 0 <= random_state < 2**32,
             f"random_state {random_state!r} must be a whole number from 0 to 2**32 - 1")
    settings = check_features(features)
    low, high = (float(value) for value in pyramid.windows[channel])
    settings["window"] = settings["window"] or [low, high if high > low else low + 1.0]
    scribbles, class_names = validate_scribbles(scribbles, class_names, ndim=pyramid.ndim,
                                                shape_zyx_or_yx=pyramid.shape)
    halo, side, shape = feature_halo(settings), TRAINING_WINDOW[pyramid.ndim], pyramid.shape[1:]
    classes, count = len(class_names), feature_count(settings, pyramid.ndim)
    windows, painted, read = _windows(scribbles, shape, side), numpy.zeros(classes, int), 0
    keys = [numpy.zeros(0, dtype=numpy.uint64) for _ in class_names]
    kept = [numpy.zeros((0, count), dtype=numpy.float32) for _ in class_names]
    for number, (key, touching, (y0, y1, x0, x1)) in enumerate(windows):
        report(0.85 * number / len(windows), f"window {number + 1} of {len(windows)}")
        labels = _window_labels(touching, y0, y1, x0, x1).ravel()
        where = numpy.flatnonzero(labels)
        label_of, (rows, cols) = labels[where].astype(numpy.int64) - 1, divmod(where, x1 - x0)
        hashes = _pixel_keys(numpy.ravel_multi_index((*key[:-2], y0 + rows, x0 + cols), shape),
                             random_state)  # the smallest SAMPLES_PER_CLASS keys are kept
        painted += numpy.bincount(label_of, minlength=classes)
        limits = numpy.array([k[-1] if k.size == SAMPLES_PER_CLASS else 2**64 - 1 for k in keys],
                             dtype=numpy.uint64)
        useful = hashes <= limits[label_of]  # may enter its class's sample
        if useful.any():
            values = _window_features(pyramid, channel, key, (y0, y1, x0, x1), settings, halo)
            values, read = values.reshape(-1, count)[where[useful]], read + 1
            for label in numpy.unique(label_of[useful]):
                mine = label_of[useful] == label
                merged = numpy.concatenate([keys[label], hashes[useful][mine]])
                order = numpy.argsort(merged, kind="stable")[:SAMPLES_PER_CLASS]
                keys[label] = merged[order]
                kept[label] = numpy.concatenate([kept[label], values[mine]])[order]
    for label, name in enumerate(class_names):
        _require(painted[label], f"class {name!r} has no pixels left: later scribbles of other "
                 "classes paint over all of its strokes")
    report(0.85, "training the random forest")
    inputs = numpy.concatenate(kept)
    outputs = numpy.repeat(numpy.arange(classes), [len(samples) for samples in kept])
    model = RandomForestClassifier(n_estimators=FOREST_TREES, max_depth=FOREST_DEPTH, n_jobs=1,
                                   random_state=random_state, oob_score=True,
                                   class_weight="balanced")
    with warnings.catch_warnings():  # a handful of samples may lack out-of-bag votes
        warnings.filterwarnings("ignore", message="Some inputs do not have OOB scores")
        model.fit(inputs, outputs)
    votes = model.oob_decision_function_  # optimistic: neighbouring scribbled pixels look alike
    voted = numpy.isfinite(votes).all(axis=1) & (votes.sum(axis=1) > 0)
    right = (votes.argmax(axis=1) == outputs)[voted]
    per_class = [right[outputs[voted] == label] for label in range(len(class_names))]
    training_report = {
        "pixels_per_class": dict(zip(class_names, map(int, painted), strict=True)),
        "samples_per_class": dict(zip(class_names, map(int, numpy.bincount(outputs)), strict=True)),
        "oob_accuracy": round(float(right.mean()), 4) if right.size else None,
        "oob_accuracy_per_class": {name: round(float(hits.mean()), 4) if hits.size else None
                                   for name, hits in zip(class_names, per_class, strict=True)},
        "feature_count": int(inputs.shape[1]), "halo": halo, "channel": int(channel),
        "windows_read": read, "random_state": int(random_state),
        "scribbles": len(scribbles), "sklearn_version": sklearn.__version__}
    report(1.0, "done")
    return TrainedClassifier(class_names, pyramid.ndim, halo, settings, model, training_report,
                             int(channel))


def save_classifier(classifier: TrainedClassifier, path: str | os.PathLike) -> None:
    """Write ``classifier`` to the single file ``path`` (atomically; same model, same bytes)."""
    payload = {"format": FILE_FORMAT, "version": FILE_VERSION, "classifier": classifier}
    temp = Path(path).with_name(f".{path.name}.partial-{secrets.token_hex(6)}")
    try:
        temp.write_bytes(pickle.dumps(payload, protocol=PICKLE_PROTOCOL))
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)  # gone already unless writing failed


def load_classifier(path: str | os.PathLike) -> TrainedClassifier:
    """The classifier saved at ``path``, else CorruptImage.  The file is a pickle: load only
    files Tilescope wrote itself, never uploaded ones."""
    path = Path(path)
    try:
        payload = pickle.loads(path.read_bytes())
    except Exception as error:  # unpickling damaged bytes can raise almost anything
        raise CorruptImage(f"{path.name} is not a readable pixel classifier: {error}") from error
    if not (isinstance(payload, dict) and payload.get("format") == FILE_FORMAT
            and payload.get("version") == FILE_VERSION
            and isinstance(payload.get("classifier"), TrainedClassifier)):
        raise CorruptImage(f"{path.name} is not a saved pixel classifier of file version "
                           f"{FILE_VERSION}")
    return payload["classifier"]
