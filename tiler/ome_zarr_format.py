"""The one module that knows the OME-Zarr (NGFF 0.5) metadata layout: build it and parse it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tiler.errors import CorruptImage

__all__ = [
    "AXIS_NAMES",
    "NGFF_VERSION",
    "VOLUME_AXIS_NAMES",
    "ChannelDisplay",
    "ImageMetadata",
    "VolumeMetadata",
    "build_image_attrs",
    "build_multiscales_attrs",
    "build_omero_attrs",
    "build_volume_attrs",
    "level_path",
    "parse_image_attrs",
    "parse_pyramid_attrs",
    "parse_volume_attrs",
]

NGFF_VERSION = "0.5"
#: Array axes, in order, of every pyramid level; also the zarr ``dimension_names``.
AXIS_NAMES = ("c", "y", "x")
#: Array axes, in order, of every level of a 3D (volume) pyramid.
VOLUME_AXIS_NAMES = ("c", "z", "y", "x")
#: How each level is made from the one above (recorded in the multiscales metadata).
DOWNSAMPLE_TYPE = "mean"
DOWNSAMPLE_DESCRIPTION = "2x2 mean of the level above, edge pixels averaged over what exists"


def level_path(level: int) -> str:
    """Zarr path of the array holding pyramid ``level`` (0 = full resolution)."""
    return str(level)


@dataclass(frozen=True)
class ChannelDisplay:
    """How one channel is shown: label, colour (hex RRGGBB) and window.

    ``start``/``end`` map to black/full colour; ``minimum``/``maximum`` bound the slider.
    """

    label: str
    color: str
    start: float
    end: float
    minimum: float
    maximum: float


@dataclass(frozen=True)
class ImageMetadata:
    """What the tiler needs from a pyramid's group attributes."""

    name: str | None
    level_paths: list[str]
    scales: list[tuple[float, float]]  # (y, x) physical size of a pixel of each level
    unit: str | None
    channels: list[ChannelDisplay]

    @property
    def pixel_size(self) -> tuple[float, float] | None:
        """Level-0 (y, x) pixel size in ``unit``, or None when the unit is unknown."""
        return self.scales[0] if self.unit else None


def build_multiscales_attrs(
    level_count: int,
    *,
    pixel_size: tuple[float, float] | None,
    unit: str | None,
    name: str | None = None,
) -> list[dict[str, Any]]:
    """The ``multiscales`` list: c/y/x axes and a scale transform per level (x2 per level)."""
    base_y, base_x = pixel_size if pixel_size else (1.0, 1.0)
    space_unit = {"unit": unit} if unit and pixel_size else {}
    multiscale: dict[str, Any] = {
        "axes": [
            {"name": "c", "type": "channel"},
            {"name": "y", "type": "space", **space_unit},
            {"name": "x", "type": "space", **space_unit},
        ],
        "datasets": [
            {
                "path": level_path(level),
                "coordinateTransformations": [
                    {"type": "scale", "scale": [1.0, base_y * 2**level, base_x * 2**level]}
                ],
            }
            for level in range(level_count)
        ],
        "type": DOWNSAMPLE_TYPE,
        "metadata": {"description": DOWNSAMPLE_DESCRIPTION},
    }
    if name:
        multiscale["name"] = name
    return [multiscale]


def build_omero_attrs(channels: list[ChannelDisplay], *, name: str | None = None) -> dict[str, Any]:
    """The transitional ``omero`` rendering block (labels, colours, windows)."""
    omero: dict[str, Any] = {
        "channels": [
            {
                "label": channel.label,
                "color": channel.color,
                "active": True,
                "coefficient": 1.0,
                "family": "linear",
                "inverted": False,
                "window": {
                    "min": channel.minimum,
                    "max": channel.maximum,
                    "start": channel.start,
                    "end": channel.end,
                },
            }
            for channel in channels
        ],
        "rdefs": {"model": "greyscale" if len(channels) == 1 else "color"},
    }
    if name:
        omero["name"] = name
    return omero


def build_image_attrs(
    level_count: int,
    channels: list[ChannelDisplay],
    *,
    pixel_size: tuple[float, float] | None,
    unit: str | None,
    name: str | None = None,
) -> dict[str, Any]:
    """Complete group attributes of a pyramid: ``{"ome": {version, multiscales, omero}}``."""
    return {
        "ome": {
            "version": NGFF_VERSION,
            "multiscales": build_multiscales_attrs(
                level_count, pixel_size=pixel_size, unit=unit, name=name
            ),
            "omero": build_omero_attrs(channels, name=name),
        }
    }


def parse_image_attrs(attrs: dict[str, Any]) -> ImageMetadata:
    """Read the attributes of an NGFF 0.5 c/y/x image; CorruptImage for anything else."""
    return _parse_multiscale(attrs, AXIS_NAMES, "image")


def _parse_channel(index: int, channel: dict[str, Any]) -> ChannelDisplay:
    window = channel.get("window", {})
    start, end = float(window.get("start", 0.0)), float(window.get("end", 255.0))
    return ChannelDisplay(
        label=str(channel.get("label", f"channel {index}")),
        color=str(channel.get("color", "FFFFFF")),
        start=start,
        end=end,
        minimum=float(window.get("min", start)),
        maximum=float(window.get("max", end)),
    )


@dataclass(frozen=True)
class VolumeMetadata:
    """What the tiler needs from a 3D pyramid's group attributes."""

    name: str | None
    level_paths: list[str]
    scales: list[tuple[float, float, float]]  # (z, y, x) physical size of a voxel of each level
    unit: str | None
    channels: list[ChannelDisplay]

    @property
    def voxel_size(self) -> tuple[float, float, float] | None:
        """Level-0 (z, y, x) voxel size in ``unit``, or None when the unit is unknown."""
        return self.scales[0] if self.unit else None


#: How each level of a volume is made from the one above.
VOLUME_DOWNSAMPLE_DESCRIPTION = (
    "mean of 2x2 (x, y) or 2x2x2 (x, y, z) voxels of the level above, z halved only while voxels "
    "stay near-isotropic; integers rounded to nearest, edge voxels averaged over what exists"
)


def build_volume_attrs(
    scales: list[tuple[float, float, float]],
    channels: list[ChannelDisplay],
    *,
    unit: str | None,
    name: str | None = None,
) -> dict[str, Any]:
    """Group attributes of a 3D pyramid: c/z/y/x axes, one (z, y, x) voxel size per level.

    ``unit`` None means the scales are relative (level 0 is 1, 1, 1) and axes carry no unit.
    """
    space_unit = {"unit": unit} if unit else {}
    multiscale: dict[str, Any] = {
        "axes": [{"name": "c", "type": "channel"}]
        + [{"name": axis, "type": "space", **space_unit} for axis in "zyx"],
        "datasets": [
            {
                "path": level_path(level),
                "coordinateTransformations": [
                    {"type": "scale", "scale": [1.0, *(float(value) for value in scale)]}
                ],
            }
            for level, scale in enumerate(scales)
        ],
        "type": DOWNSAMPLE_TYPE,
        "metadata": {"description": VOLUME_DOWNSAMPLE_DESCRIPTION},
    }
    if name:
        multiscale["name"] = name
    return {
        "ome": {
            "version": NGFF_VERSION,
            "multiscales": [multiscale],
            "omero": build_omero_attrs(channels, name=name),
        }
    }


def parse_volume_attrs(attrs: dict[str, Any]) -> VolumeMetadata:
    """Read the attributes of an NGFF 0.5 c/z/y/x volume; CorruptImage for anything else."""
    return _parse_multiscale(attrs, VOLUME_AXIS_NAMES, "volume")


def _parse_multiscale(attrs: dict[str, Any], axis_names: tuple[str, ...],
                      kind: str) -> ImageMetadata | VolumeMetadata:
    """The one reader of multiscale attributes (what `build_image_attrs`/`build_volume_attrs` write)."""
    try:
        ome = attrs["ome"]
        if str(ome.get("version")) != NGFF_VERSION:
            raise CorruptImage(f"OME-Zarr version {ome.get('version')!r} is not {NGFF_VERSION}")
        multiscale = ome["multiscales"][0]
        axes = multiscale["axes"]
        names = tuple(axis["name"] for axis in axes)
        if names != axis_names:
            raise CorruptImage(f"{kind} axes {names} are not {axis_names}")
        paths, scales = [], []
        for dataset in multiscale["datasets"]:
            paths.append(str(dataset["path"]))
            scale = next((t["scale"] for t in dataset["coordinateTransformations"] if t["type"] == "scale"),
                         [1.0] * len(axis_names))
            scales.append(tuple(float(value) for value in scale[1:]))
        channels = [_parse_channel(index, channel)
                    for index, channel in enumerate(ome.get("omero", {}).get("channels", []))]
    except CorruptImage:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as error:
        raise CorruptImage(f"not an OME-Zarr {NGFF_VERSION} {kind}: missing or bad {error}") from error
    if not paths:
        raise CorruptImage(f"the OME-Zarr {kind} lists no pyramid levels")
    metadata = VolumeMetadata if kind == "volume" else ImageMetadata
    return metadata(name=multiscale.get("name"), level_paths=paths, scales=scales,
                    unit=axes[-1].get("unit"), channels=channels)


def parse_pyramid_attrs(attrs: dict[str, Any]) -> ImageMetadata | VolumeMetadata:
    """``parse_volume_attrs`` for c/z/y/x pyramids, else ``parse_image_attrs``."""
    try:
        names = tuple(axis["name"] for axis in attrs["ome"]["multiscales"][0]["axes"])
    except (KeyError, IndexError, TypeError):
        names = ()
    if names == VOLUME_AXIS_NAMES:
        return parse_volume_attrs(attrs)
    return parse_image_attrs(attrs)
