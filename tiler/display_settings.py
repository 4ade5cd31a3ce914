"""How a view maps channels to screen pixels (channels on, windows, colours, gamma, invert), parsed from a web query."""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from tiler.colormaps import COLORMAPS, GREY_NAMES, is_colormap
from tiler.errors import InvalidParameter

__all__ = ["GAMMA_RANGE", "DisplaySettings", "ResolvedDisplay", "parse_display"]

#: Smallest and largest gamma accepted (display value = windowed value ** gamma).
GAMMA_RANGE = (0.1, 10.0)
#: Query values meaning "on" / "off" for ``invert``.
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
#: Query values of ``c`` meaning "no channel on".
NO_CHANNELS = ("", "none")
#: Query value of a ``w`` item meaning "the pyramid's default window for this channel".
AUTO_WINDOW = "auto"

Window = tuple[float, float]


@dataclass(frozen=True)
class ResolvedDisplay:
    """Display settings made concrete for one image: the channels to draw, in image order, with
    the window and colour (hex RRGGBB or colormap name) of each."""

    channels: tuple[int, ...]
    windows: tuple[Window, ...]
    colors: tuple[str, ...]
    gamma: float
    invert: bool


@dataclass(frozen=True)
class DisplaySettings:
    """How channels map to screen pixels; None fields mean the pyramid's defaults.

    ``channels``: channel indices that are on (None = all).  ``windows``: one (start, end) per
    channel of the image, in image order, or None in an entry for that channel's default.
    ``colors``: one hex RRGGBB (or, for a lone channel, a colormap name) per channel.
    ``colormap``: a colormap for the single channel on.  Each channel's windowed value v in
    [0, 1] becomes v ** ``gamma``, then 1 - v if ``invert``, then is coloured.
    """

    channels: tuple[int, ...] | None = None
    windows: tuple[Window | None, ...] | None = None
    colors: tuple[str, ...] | None = None
    gamma: float = 1.0
    invert: bool = False
    colormap: str | None = None

    def __post_init__(self) -> None:
        if self.channels is not None:
            channels = tuple(self.channels)
            if all(isinstance(c, numbers.Integral) and not isinstance(c, bool) for c in channels):
                channels = tuple(sorted({int(c) for c in channels}))  # order does not matter
            object.__setattr__(self, "channels", channels)
        if self.windows is not None:
            object.__setattr__(self, "windows", tuple(_normal_window(w) for w in self.windows))
        if self.colors is not None:
            object.__setattr__(self, "colors", tuple(_normal_color(c) for c in self.colors))
        if self.colormap is not None:
            object.__setattr__(self, "colormap", _normal_color(self.colormap))

    @property
    def is_default(self) -> bool:
        """True when every field is the pyramid's default."""
        return self == DEFAULT_DISPLAY

    def key(self) -> str:
        """A short string that is the same for equal settings in every process (for ETags)."""
        if self.is_default:
            return "default"
        text = json.dumps([self.channels, self.windows, self.colors, float(self.gamma),
                           bool(self.invert), self.colormap], separators=(",", ":"))
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()

    def validate(self, n_channels: int) -> DisplaySettings:
        """These settings with channels sorted, or InvalidParameter naming what is valid."""
        channels = self.channels
        if channels is not None:
            channels = tuple(sorted({_check_channel(c, n_channels) for c in channels}))
        if self.windows is not None:
            _check_count("w", "windows", len(self.windows), n_channels, "auto")
            for index, window in enumerate(self.windows):
                if window is not None:
                    _check_window(window, index)
        if self.colors is not None:
            _check_count("color", "colours", len(self.colors), n_channels, "a colour")
            for index, color in enumerate(self.colors):
                _check_color(color, index)
        if self.colormap is not None and not is_colormap(self.colormap):
            raise InvalidParameter(f"unknown colormap {self.colormap!r}; use one of "
                                   f"{', '.join(COLORMAPS)}")
        on = list(range(n_channels)) if channels is None else list(channels)
        uses_map = self.colormap is not None or any(
            is_colormap(self.colors[c]) for c in on if self.colors is not None)
        if uses_map and len(on) != 1:
            raise InvalidParameter(f"a colormap shows exactly one channel, but {len(on)} are on; "
                                   "pick one with c=<channel>")
        if not (isinstance(self.gamma, numbers.Real) and math.isfinite(self.gamma)
                and GAMMA_RANGE[0] <= self.gamma <= GAMMA_RANGE[1]):
            raise InvalidParameter(f"gamma {self.gamma!r} is out of range; use a number from "
                                   f"{GAMMA_RANGE[0]:g} to {GAMMA_RANGE[1]:g}")
        return replace(self, channels=channels, gamma=float(self.gamma),
                       invert=bool(self.invert))

    def resolve(self, default_windows: Sequence[Window],
                default_colors: Sequence[str]) -> ResolvedDisplay:
        """Fill in the pyramid's defaults (one window and colour per channel) after validating."""
        count = len(default_windows)
        settings = self.validate(count)
        channels = tuple(range(count)) if settings.channels is None else settings.channels
        windows = [settings.windows[c] if settings.windows and settings.windows[c] else
                   tuple(default_windows[c]) for c in channels]
        colors = [settings.colors[c] if settings.colors else default_colors[c] for c in channels]
        if settings.colormap is not None:
            colors = [settings.colormap]
        return ResolvedDisplay(channels, tuple(windows), tuple(colors),  # type: ignore[arg-type]
                               settings.gamma, settings.invert)


DEFAULT_DISPLAY = DisplaySettings()


def parse_display(query: Mapping[str, str], n_channels: int) -> DisplaySettings:
    """DisplaySettings from a web query; unknown keys are ignored, bad values raise
    InvalidParameter with the valid format.

    ``c=0,2`` channels on (``c=`` or ``c=none``: none); ``w=0:1000,auto,...`` one window per
    channel in image order; ``color=FF0000,00FF00,...`` one colour per channel (a colormap name
    allowed for a lone channel); ``cmap=viridis``; ``gamma=0.8``; ``invert=1``.
    """
    channels = windows = colors = None
    if (text := _value(query, "c")) is not None:
        channels = _parse_channels(text, n_channels)
    if text := _value(query, "w"):
        windows = tuple(_parse_window(item, index) for index, item in enumerate(text.split(",")))
    if text := _value(query, "color"):
        colors = tuple(item.strip() for item in text.split(","))
    colormap = _value(query, "cmap") or None
    gamma = 1.0
    if text := _value(query, "gamma"):
        gamma = _parse_number(text, "gamma", f"a number from {GAMMA_RANGE[0]:g} to "
                                             f"{GAMMA_RANGE[1]:g}")
    invert = False
    if text := _value(query, "invert"):
        if text.lower() not in TRUE_WORDS + FALSE_WORDS:
            raise InvalidParameter(f"invert must be 1 or 0, not {text!r}")
        invert = text.lower() in TRUE_WORDS
    settings = DisplaySettings(channels=channels, windows=windows, colors=colors, gamma=gamma,
                               invert=invert, colormap=colormap)
    return settings.validate(n_channels)


def _value(query: Mapping[str, str], key: str) -> str | None:
    value = query.get(key)
    return None if value is None else str(value).strip()


def _parse_channels(text: str, n_channels: int) -> tuple[int, ...]:
    if text.lower() in NO_CHANNELS:
        return ()
    channels = []
    for item in text.split(","):
        try:
            channels.append(int(item.strip()))
        except ValueError:
            raise InvalidParameter(f"channel {item.strip()!r} is not a channel number; valid "
                                   f"channels are 0 to {n_channels - 1}, e.g. c=0,2") from None
    return tuple(channels)


def _parse_window(item: str, index: int) -> Window | None:
    item = item.strip()
    if item.lower() == AUTO_WINDOW:
        return None
    parts = item.split(":")
    expected = "start:end with start < end (e.g. 0:1000) or auto"
    if len(parts) != 2:
        raise InvalidParameter(f"window {item!r} for channel {index} is not {expected}")
    start, end = (_parse_number(part, f"window {item!r} for channel {index}", expected)
                  for part in parts)
    return start, end


def _parse_number(text: str, what: str, expected: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidParameter(f"{what} is not {expected}") from None
    if not math.isfinite(value):
        raise InvalidParameter(f"{what} is not {expected}")
    return value


def _check_channel(channel: object, n_channels: int) -> int:
    try:
        number = None if isinstance(channel, bool) else operator.index(channel)  # type: ignore
    except TypeError:
        number = None
    if number is None or not 0 <= number < n_channels:
        raise InvalidParameter(f"channel {channel!r} does not exist; valid channels are 0 to "
                               f"{n_channels - 1}")
    return number


def _check_count(key: str, what: str, given: int, n_channels: int, placeholder: str) -> None:
    if given != n_channels:
        raise InvalidParameter(f"{key} has {given} {what} but the image has {n_channels} "
                               f"channels; give one per channel in image order ({placeholder} "
                               "for the default)")


#: Windows must stay well inside float32 so the display arithmetic never overflows or divides by ~0.
WINDOW_LIMIT = 1e30
MIN_WINDOW_SPAN = 1e-12


def _check_window(window: tuple, index: int) -> None:
    ok = len(window) == 2 and all(isinstance(v, numbers.Real) and math.isfinite(v) and abs(v) <= WINDOW_LIMIT
                                  for v in window)
    if not ok or window[1] - window[0] < MIN_WINDOW_SPAN * max(1.0, abs(window[0]), abs(window[1])):
        raise InvalidParameter(f"window {window!r} for channel {index} is not start:end with "
                               f"numbers within ±{WINDOW_LIMIT:g} and start < end (e.g. 0:1000)")


def _check_color(color: str, index: int) -> None:
    if not (_is_hex(color) or is_colormap(color)):
        raise InvalidParameter(f"colour {color!r} for channel {index} is not a hex RRGGBB colour "
                               f"(e.g. FF0000) or a colormap ({', '.join(COLORMAPS)})")


def _is_hex(color: str) -> bool:
    return len(color) == 6 and all(c in "0123456789ABCDEF" for c in color)


def _normal_window(window: Sequence[float] | None) -> Window | None:
    """A window as a tuple of floats (so equal windows give equal keys); bad values kept."""
    if window is None:
        return None
    values = tuple(window)
    if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
        return tuple(float(v) for v in values)  # type: ignore[return-value]
    return values  # type: ignore[return-value]


def _normal_color(color: str) -> str:
    """"#ff8800" -> "FF8800", "Gray" -> "grey"; anything else unchanged (validate rejects it)."""
    text = str(color).strip()
    if is_colormap(text):
        return "grey" if text.lower() in GREY_NAMES else text.lower()
    hexed = text.lstrip("#").upper()
    return hexed if _is_hex(hexed) else text
