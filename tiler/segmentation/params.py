"""Segmentation parameters: each method's schema, the checks, the defaults, the UI description."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tiler.errors import InvalidParameter

__all__ = ["METHODS", "ParameterError", "describe_methods", "validate_params"]

#: Global threshold algorithms (scikit-image's threshold_<name>) and "manual" (``value``).
THRESHOLD_ALGORITHMS = ("otsu", "li", "yen", "manual")
#: Statistics of scikit-image's threshold_local the local method offers.
LOCAL_STATISTICS = ("gaussian", "mean")
#: Parameters of the classifier method checked for type only and kept as given (the
#: classifier module checks them in detail); other extra keys are kept as well.
CLASSIFIER_PASS_THROUGH = {"scribbles": list, "class_names": list, "features": dict}


class ParameterError(InvalidParameter):
    """Segmentation parameters are wrong; ``str()`` says which one and what is allowed."""


@dataclass(frozen=True)
class Param:
    """One parameter of a method: type ("int", "float", "choice" or "bool"), default, bounds."""

    name: str
    type: str
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None
    odd: bool = False

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "default": self.default,
                "min": self.min, "max": self.max,
                "choices": list(self.choices) if self.choices else None, "help": self.help}


CHANNEL = Param("channel", "int", 0, "Channel of the image to segment (0 = first).", min=0)
MIN_SIZE = Param("min_size", "int", 0, "Objects with fewer pixels (voxels in 3D) than this, "
                 "counted at full resolution, are dropped.", min=0)
POLARITY = Param("polarity", "choice", "bright", "bright: objects are brighter than the "
                 "threshold (cells, particles); dark: darker (pores in CT, holes).",
                 choices=("bright", "dark"))
CONNECTIVITY = Param("connectivity", "choice", 1, "Which neighbours join pixels into one "
                     "object: 1 = sides only (4 in 2D, 6 in 3D, the default); full = sides, "
                     "edges and corners (8 in 2D, 26 in 3D).", choices=(1, "full"))
ALGORITHM = Param("algorithm", "choice", "otsu", "How the global threshold is found: otsu, li "
                  "or yen (computed on a reduced pyramid level) or manual (uses value).",
                  choices=THRESHOLD_ALGORITHMS)
VALUE = Param("value", "float", None, "The threshold for algorithm=manual, in the image's "
              "intensity units.")


@dataclass(frozen=True)
class Method:
    """A segmentation method as the UI shows it."""

    name: str
    label: str
    description: str
    params: tuple[Param, ...]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "description": self.description,
                "params": [param.describe() for param in self.params]}


METHODS: dict[str, Method] = {method.name: method for method in (
    Method("threshold", "Global threshold",
           "One threshold for the whole image (Otsu, Li, Yen or manual); objects are the "
           "connected groups of pixels on the object side of it.",
           (CHANNEL, ALGORITHM, VALUE, POLARITY, MIN_SIZE, CONNECTIVITY)),
    Method("local", "Local (adaptive) threshold",
           "A threshold per pixel from its neighbourhood (scikit-image threshold_local), for "
           "uneven illumination; objects are connected groups of object pixels.",
           (CHANNEL,
            Param("block_size", "int", 51, "Side of the neighbourhood in pixels (odd).",
                  min=3, max=1001, odd=True),
            Param("offset", "float", 0.0, "Subtracted from the local threshold (intensity "
                  "units)."),
            Param("statistic", "choice", "gaussian", "Weighting of the neighbourhood: "
                  "gaussian or mean.", choices=LOCAL_STATISTICS),
            POLARITY, MIN_SIZE, CONNECTIVITY)),
    Method("watershed", "Watershed (split touching objects)",
           "A global threshold, then a seeded watershed on the distance to the background "
           "splits touching round objects (particles, cells, grains).",
           (CHANNEL, ALGORITHM, VALUE, POLARITY, MIN_SIZE,
            Param("min_distance", "int", 5, "Smallest distance between two object centres, "
                  "in pixels.", min=1, max=500),
            Param("max_object_radius", "int", 25, "Radius of the largest objects expected, in "
                  "pixels; blocks overlap by twice this so objects cut by a block edge are "
                  "split the same on both sides.", min=1, max=500))),
    Method("classifier", "Pixel classifier",
           "A random forest trained on scribbles labels every pixel; objects are connected "
           "groups of pixels of the same non-background class.",
           (CHANNEL, MIN_SIZE, CONNECTIVITY)),
)}


def describe_methods() -> list[dict[str, Any]]:
    """JSON-able schema of every method for the UI: name, label, description and params, each
    {name, type (int|float|choice|bool), default, min, max, choices, help}."""
    return [method.describe() for method in METHODS.values()]


def validate_params(raw: dict, ndim: int, channels: int) -> dict:
    """A checked, normalised copy of ``raw`` with every default filled in.

    ``ndim`` (2 or 3) and ``channels`` describe the image.  ParameterError says exactly what
    is wrong, e.g. "threshold.min_size must be an integer >= 0, got -3".  ``connectivity``
    becomes 1 or "full" (an integer 1..ndim is also accepted, scikit-image's meaning); ``value``
    is None unless the algorithm is manual.  For the classifier method ``scribbles``,
    ``class_names`` and ``features`` are only type-checked and, like any other extra keys, kept.
    """
    if not isinstance(raw, dict):
        raise ParameterError(f"parameters must be an object (dict), got {type(raw).__name__}")
    if ndim not in (2, 3):
        raise ParameterError(f"images have 2 or 3 dimensions, not {ndim!r}")
    name = raw.get("method")
    if name not in METHODS:
        shown = "no method given" if name is None else f"unknown method {name!r}"
        raise ParameterError(f"{shown}; use one of {', '.join(METHODS)}")
    method = METHODS[name]
    known = {param.name for param in method.params} | {"method"}
    extra = {key: value for key, value in raw.items() if key not in known}
    if name != "classifier" and extra:
        key = sorted(extra, key=str)[0]
        raise ParameterError(f"unknown parameter {key!r} for method {name!r}; valid parameters: "
                             f"{', '.join(sorted(known - {'method'}))}")
    params: dict[str, Any] = {"method": name}
    for param in method.params:
        value = raw.get(param.name, param.default)
        params[param.name] = None if value is None else _check(name, param, value, ndim)
    if params["channel"] >= channels:
        raise ParameterError(f"{name}.channel must be between 0 and {channels - 1} (the image "
                             f"has {channels} channel{'s' if channels > 1 else ''}), "
                             f"got {params['channel']}")
    if "algorithm" in params:
        if params["algorithm"] == "manual" and params["value"] is None:
            raise ParameterError(f"{name}.value is required when algorithm is 'manual'")
        if params["algorithm"] != "manual":
            params["value"] = None
    if name == "classifier":
        for key, kind in CLASSIFIER_PASS_THROUGH.items():
            if extra.get(key) is not None and not isinstance(extra[key], kind):
                raise ParameterError(f"classifier.{key} must be a {kind.__name__}, got "
                                     f"{type(extra[key]).__name__}")
        names = extra.get("class_names")
        if names is not None and not all(isinstance(item, str) for item in names):
            raise ParameterError("classifier.class_names must be a list of strings")
        params.update(extra)
    return params


def _check(method: str, param: Param, value: Any, ndim: int) -> Any:
    """``value`` of ``param`` normalised, or ParameterError naming ``method.param``."""
    where = f"{method}.{param.name}"
    if param.name == "connectivity":
        return _connectivity(where, value, ndim)
    if param.type == "choice":
        if value not in param.choices:
            raise ParameterError(f"{where} must be one of "
                                 f"{', '.join(str(c) for c in param.choices)}, got {value!r}")
        return value
    if param.type == "bool":
        if not isinstance(value, bool):
            raise ParameterError(f"{where} must be true or false, got {value!r}")
        return value
    if param.type == "int":
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if isinstance(value, bool) or not whole or not _in_range(param, value) or (
                param.odd and int(value) % 2 == 0):
            raise ParameterError(f"{where} must be {_int_rule(param)}, got {value!r}")
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ParameterError(f"{where} must be a number, got {value!r}")
    return float(value)


def _connectivity(where: str, value: Any, ndim: int) -> int | str:
    if value in ("full", ndim, str(ndim)) and not isinstance(value, bool):
        return "full"
    if value in (1, "1") and not isinstance(value, bool):
        return 1
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= ndim:
        return value
    raise ParameterError(f"{where} must be 1 (sides only) or 'full' (with edges and corners), "
                         f"got {value!r}")


def _in_range(param: Param, value: float) -> bool:
    return ((param.min is None or value >= param.min)
            and (param.max is None or value <= param.max))


def _int_rule(param: Param) -> str:
    kind = "an odd integer" if param.odd else "an integer"
    if param.min is not None and param.max is not None:
        return f"{kind} between {param.min} and {param.max}"
    if param.min is not None:
        return f"{kind} >= {param.min}"
    return kind
