"""Generated volumes of every kind the volume readers handle, and the voxels they must give."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy
import zarr

from tiler.readers import open_image, open_raw_volume
from tiler.readers.volume_base import VolumeSource
from tiler.synthetic_dicom import (
    dicom_stored_volume,
    write_synthetic_dicom_series,
    write_synthetic_multiframe_dicom,
)
from tiler.synthetic_volume import (
    synthetic_volume,
    write_synthetic_raw,
    write_synthetic_stack,
    write_synthetic_tiff_stack,
    write_synthetic_zip_stack,
)

#: (z, y, x) of the samples: more than 32 slices (a generic multi-page TIFF is a stack), more
#: than 9 (natural order matters), sides that are no multiple of the chunk sizes used.
VOLUME_SHAPE = (36, 45, 61)


@dataclass
class VolumeSample:
    """A generated input, how to open it, and the (c, z, y, x) voxels it must read back as."""

    path: Path
    expected: numpy.ndarray
    format_name: str
    voxel_size: tuple[float, float, float] | None = None
    opener: Callable[[Path], VolumeSource] = field(default=open_image)  # type: ignore[assignment]

    def open(self) -> VolumeSource:
        return self.opener(self.path)


def _folder(fmt: str, dtype: str, channels: int = 1) -> Callable[[Path], VolumeSample]:
    def make(tmp: Path) -> VolumeSample:
        write_synthetic_stack(tmp / "slices", VOLUME_SHAPE, dtype, fmt=fmt, channels=channels)
        (tmp / "slices" / "notes.txt").write_text("scanner log, not a slice")
        return VolumeSample(tmp / "slices", synthetic_volume(VOLUME_SHAPE, dtype, channels),
                            "STACK")
    return make


def _zip(fmt: str, dtype: str) -> Callable[[Path], VolumeSample]:
    def make(tmp: Path) -> VolumeSample:
        path = write_synthetic_zip_stack(tmp / "stack.zip", VOLUME_SHAPE, dtype, fmt=fmt)
        return VolumeSample(path, synthetic_volume(VOLUME_SHAPE, dtype), "ZIP-STACK")
    return make


def _tiff_stack(imagej: bool, channels: int = 1) -> Callable[[Path], VolumeSample]:
    def make(tmp: Path) -> VolumeSample:
        voxel = (2.0, 0.5, 0.5) if imagej else None
        path = write_synthetic_tiff_stack(tmp / "stack.tif", VOLUME_SHAPE, "uint16", imagej=imagej,
                                          channels=channels, voxel_size_um=voxel,
                                          compression=None if imagej else "zlib")
        return VolumeSample(path, synthetic_volume(VOLUME_SHAPE, "uint16", channels),
                            "TIFF-STACK", voxel)
    return make


def _dicom_series(zipped: bool, slope: float, intercept: float, dtype: str
                  ) -> Callable[[Path], VolumeSample]:
    def make(tmp: Path) -> VolumeSample:
        paths = write_synthetic_dicom_series(tmp / "series", VOLUME_SHAPE, slope=slope,
                                             intercept=intercept, pixel_spacing=(0.5, 0.4),
                                             slice_spacing=1.25)
        expected = (dicom_stored_volume(VOLUME_SHAPE).astype(numpy.float64) * slope + intercept)
        sample = VolumeSample(tmp / "series", expected.astype(dtype)[numpy.newaxis], "DICOM",
                              (1.25, 0.5, 0.4))
        if zipped:
            with zipfile.ZipFile(tmp / "series.zip", "w", zipfile.ZIP_DEFLATED) as archive:
                for path in paths:
                    archive.write(path, f"export/DICOM/{path.name}")
                archive.writestr("export/README.txt", "exported by a synthetic scanner")
            sample.path = tmp / "series.zip"
        return sample
    return make


def _multiframe(tmp: Path) -> VolumeSample:
    path = write_synthetic_multiframe_dicom(tmp / "enhanced.dcm", VOLUME_SHAPE, slope=2.0,
                                            intercept=-1000.0, pixel_spacing=(0.3, 0.3),
                                            slice_spacing=0.6)
    expected = dicom_stored_volume(VOLUME_SHAPE).astype(numpy.int32) * 2 - 1000
    return VolumeSample(path, expected.astype(numpy.int16)[numpy.newaxis], "DICOM",
                        (0.6, 0.3, 0.3))


def _raw(tmp: Path) -> VolumeSample:
    path = write_synthetic_raw(tmp / "volume.raw", VOLUME_SHAPE, "int16", byteorder="big")
    return VolumeSample(path, synthetic_volume(VOLUME_SHAPE, "int16"), "RAW", (1.0, 0.5, 0.5),
                        lambda p: open_raw_volume(p, VOLUME_SHAPE, "int16", "big",
                                                  voxel_size=(1.0, 0.5, 0.5)))


def _ome_zarr_v2(tmp: Path) -> VolumeSample:
    """An NGFF 0.4 image on zarr v2 with t, c, z, y, x axes (as older tools write them)."""
    data = synthetic_volume(VOLUME_SHAPE, "uint16", channels=2)
    group = zarr.open_group(str(tmp / "old.ome.zarr"), mode="w", zarr_format=2)
    group.create_array("0", data=data[numpy.newaxis], chunks=(1, 1, 16, 32, 32))
    group.attrs["multiscales"] = [{
        "version": "0.4",
        "axes": [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}]
        + [{"name": name, "type": "space", "unit": "micrometer"} for name in "zyx"],
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [1.0, 1.0, 3.0, 0.75, 0.75]}]}],
    }]
    group.attrs["omero"] = {"channels": [{"label": "DAPI"}, {"label": "GFP"}]}
    return VolumeSample(tmp / "old.ome.zarr", data, "OME-ZARR", (3.0, 0.75, 0.75))


#: Every kind of volume input, by a readable id.
VOLUME_MAKERS: dict[str, Callable[[Path], VolumeSample]] = {
    "folder-tiff-uint16": _folder("tiff", "uint16"),
    "folder-png-uint8": _folder("png", "uint8"),
    "folder-png-rgb": _folder("png", "uint8", channels=3),
    "zip-png-uint16": _zip("png", "uint16"),
    "zip-tiff-float32": _zip("tiff", "float32"),
    "tiff-multipage-generic": _tiff_stack(imagej=False),
    "tiff-imagej-zcyx": _tiff_stack(imagej=True, channels=2),
    "dicom-series-shuffled": _dicom_series(False, 1.0, -1024.0, "int16"),
    "dicom-zip-float-rescale": _dicom_series(True, 0.5, 1.5, "float32"),
    "dicom-multiframe": _multiframe,
    "raw-big-endian-int16": _raw,
    "ome-zarr-v2-tczyx": _ome_zarr_v2,
}
