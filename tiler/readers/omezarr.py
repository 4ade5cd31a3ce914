"""Existing OME-Zarr images (NGFF 0.1-0.5, zarr v2 or v3): 2D as ImageSource, 3D as VolumeSource."""

from __future__ import annotations

import json
import os
from typing import Any, ClassVar

import numpy
import zarr

from tiler.errors import CorruptImage, TilerError, UnsupportedFormat
from tiler.readers.base import ImageSource, check_pixel_limit, default_channel_names
from tiler.readers.volume_base import VolumeSource, check_volume_dtype, check_volume_limit
from tiler.safe_archive import check_folder_links

__all__ = ["OmeZarrImage", "OmeZarrReader", "OmeZarrVolume", "is_ome_zarr"]

#: Axis order assumed when old (NGFF 0.1/0.2) metadata names no axes.
DEFAULT_AXES = "tczyx"
#: Axis names this reader maps onto (c, z, y, x); "t" must have size 1.
KNOWN_AXES = set("tczyx")


def is_ome_zarr(path: str) -> bool:
    """True for a folder holding a zarr group whose attributes list OME multiscales."""
    for name, nested in (("zarr.json", True), (".zattrs", False)):
        try:
            with open(os.path.join(path, name), encoding="utf-8") as handle:
                document = json.load(handle)
        except (OSError, ValueError):
            continue
        attrs = document.get("attributes", {}) if nested else document
        if isinstance(attrs, dict) and ("multiscales" in attrs.get("ome", {}) or
                                        "multiscales" in attrs):
            return True
    return False


class _Layout:
    """Level 0 of an OME-Zarr image and how its axes map onto (c, z, y, x)."""

    def __init__(self, path: str) -> None:
        check_folder_links(path)
        try:
            group = zarr.open_group(path, mode="r")
            attrs = group.attrs.asdict()
            ome = attrs.get("ome", attrs)
            multiscale = ome["multiscales"][0]
            dataset = multiscale["datasets"][0]
            self.array = group[str(dataset["path"])]
            axes = multiscale.get("axes") or list(DEFAULT_AXES[-self.array.ndim:])
            names = [axis["name"] if isinstance(axis, dict) else str(axis) for axis in axes]
            units = [axis.get("unit") if isinstance(axis, dict) else None for axis in axes]
            scale = _scale(dataset, self.array.ndim)
            top = _scale(multiscale, self.array.ndim)
            omero = ome.get("omero") or {}
        except TilerError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as error:
            raise CorruptImage(f"not a readable OME-Zarr image: missing or bad {error}") from error
        if not isinstance(self.array, zarr.Array) or len(names) != self.array.ndim:
            raise CorruptImage("the OME-Zarr axes do not match its first level's dimensions")
        if not set(names) <= KNOWN_AXES or "y" not in names or "x" not in names:
            raise UnsupportedFormat(f"OME-Zarr axes {names} are not supported (t, c, z, y, x)")
        self.names = names
        self.size = dict(zip(names, self.array.shape, strict=True))
        if self.size.get("t", 1) > 1:
            raise UnsupportedFormat(f"OME-Zarr time series ({self.size['t']} time points) are "
                                    "not supported")
        self.scale = {name: a * b for name, a, b in zip(names, scale, top, strict=True)}
        unit = units[names.index("x")]
        self.unit = str(unit) if unit else None
        self.channels = self.size.get("c", 1)
        labels = [str(c.get("label", "")) for c in omero.get("channels", [])
                  if isinstance(c, dict)]
        self.channel_names = labels if len(labels) == self.channels and all(labels) else (
            default_channel_names(self.channels))

    def read(self, bounds: dict[str, slice], order: str) -> numpy.ndarray:
        """The block selected by ``bounds`` (other axes: index 0), axes in ``order``."""
        selection = [bounds.get(name, 0 if name == "t" else slice(None)) for name in self.names]
        kept = [name for name, part in zip(self.names, selection, strict=True)
                if isinstance(part, slice)]
        try:
            block = numpy.asarray(self.array[tuple(selection)])
        except TilerError:
            raise
        except Exception as error:  # a missing or damaged chunk
            raise CorruptImage(f"cannot read OME-Zarr data: {type(error).__name__}: {error}"
                               ) from error
        for name in order:
            if name not in kept:
                block, kept = block[numpy.newaxis], [name, *kept]
        return block.transpose([kept.index(name) for name in order])


def _scale(holder: dict[str, Any], ndim: int) -> list[float]:
    for transform in holder.get("coordinateTransformations") or []:
        if transform.get("type") == "scale" and len(transform.get("scale", [])) == ndim:
            return [float(value) for value in transform["scale"]]
    return [1.0] * ndim


class OmeZarrImage(ImageSource):
    """A 2D OME-Zarr image (no z axis, or one slice): level 0 read region by region."""

    format_name = "OME-ZARR"

    @classmethod
    def sniff(cls, header: bytes) -> bool:
        return False  # a folder, not a file: found by OmeZarrReader.sniff_path

    def __init__(self, path: str | os.PathLike, *, max_pixels: int) -> None:
        self.path = os.fspath(path)
        self._layout = layout = _Layout(self.path)
        check_pixel_limit(layout.size["y"], layout.size["x"], max_pixels)
        self.dtype = check_volume_dtype(layout.array.dtype, "OME-Zarr")
        self.shape = (layout.channels, layout.size["y"], layout.size["x"])
        self.channel_names = layout.channel_names
        self.pixel_size = (layout.scale["y"], layout.scale["x"]) if layout.unit else None
        self.unit = layout.unit if self.pixel_size else None

    def _read(self, y0: int, y1: int, x0: int, x1: int) -> numpy.ndarray:
        block = self._layout.read({"y": slice(y0, y1), "x": slice(x0, x1), "z": 0}, "cyx")
        return numpy.ascontiguousarray(block, dtype=self.dtype)


class OmeZarrVolume(VolumeSource):
    """A 3D OME-Zarr image: level 0 read block by block (re-chunked by the pyramid writer)."""

    format_name: ClassVar[str] = "OME-ZARR"

    def __init__(self, path: str | os.PathLike, *, max_pixels: int) -> None:
        self.path = os.fspath(path)
        self._layout = layout = _Layout(self.path)
        size = layout.size
        check_volume_limit(size.get("z", 1), size["y"], size["x"], max_pixels)
        self.dtype = check_volume_dtype(layout.array.dtype, "OME-Zarr")
        self.shape = (layout.channels, size.get("z", 1), size["y"], size["x"])
        self.channel_names = layout.channel_names
        scale = layout.scale
        self.voxel_size = (scale.get("z", 1.0), scale["y"], scale["x"]) if layout.unit else None
        self.unit = layout.unit if self.voxel_size else None
        self.metadata = {}

    def _read_block(self, z0: int, z1: int, y0: int, y1: int, x0: int, x1: int) -> numpy.ndarray:
        bounds = {"z": slice(z0, z1), "y": slice(y0, y1), "x": slice(x0, x1)}
        return numpy.ascontiguousarray(self._layout.read(bounds, "czyx"), dtype=self.dtype)


class OmeZarrReader:
    """Opens an OME-Zarr folder as OmeZarrVolume when it has z slices, else OmeZarrImage."""

    format_name: ClassVar[str] = "OME-ZARR"

    @classmethod
    def sniff_path(cls, path: str, head: bytes) -> str | None:
        return cls.format_name if os.path.isdir(path) and is_ome_zarr(path) else None

    @classmethod
    def open(cls, path: str, *, max_pixels: int) -> ImageSource | VolumeSource:
        if _Layout(path).size.get("z", 1) > 1:
            return OmeZarrVolume(path, max_pixels=max_pixels)
        return OmeZarrImage(path, max_pixels=max_pixels)
