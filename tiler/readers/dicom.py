"""DICOM series (a folder, zip or lone multi-frame file) as one volume, read with pydicom."""

from __future__ import annotations

import io
import os
import shutil
import struct
import tempfile
import threading
import warnings
from typing import Any, ClassVar

import numpy
import pydicom
import pydicom.errors
from pydicom.pixels import get_decoder, pixel_array

from tiler.errors import CorruptImage, TilerError, UnsupportedFormat
from tiler.readers.base import default_channel_names
from tiler.readers.dicom_series import DicomLayout, DicomPlane, plan_series
from tiler.readers.slices import slice_kind
from tiler.readers.stack import classify_collection
from tiler.readers.volume_base import VolumeSource, check_volume_limit
from tiler.safe_archive import FileCollection, Member, SingleFile, is_zip, open_collection

__all__ = ["DicomReader"]

#: Bytes of a zip member read to parse its header before falling back on the whole member.
HEADER_PROBE_BYTES = 1 << 18
#: The (7FE0,0010) Pixel Data tag as it appears in a little-endian file.
PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"
#: Errors pydicom raises on damaged files.
_DICOM_ERRORS = (pydicom.errors.InvalidDicomError, ValueError, TypeError, KeyError, AttributeError,
                 EOFError, OSError, IndexError, struct.error)


class DicomReader(VolumeSource):
    """A DICOM series as a (c, z, y, x) volume.

    Slices are sorted by their position along the slice normal (ImagePositionPatient and
    ImageOrientationPatient), else InstanceNumber; each is rescaled (RescaleSlope/Intercept)
    to an integer type when that stays exact, else float32.  The voxel size comes from
    PixelSpacing and the slice positions, in millimetres.  A multi-frame file is a volume
    of its frames.  Non-DICOM files beside the series are ignored; several series are refused.
    """

    format_name: ClassVar[str] = "DICOM"

    @classmethod
    def sniff_path(cls, path: str, head: bytes) -> str | None:
        """"DICOM" for a DICOM file, or a folder or zip holding DICOM files."""
        if slice_kind(head) == "DICOM":
            return cls.format_name
        if not (os.path.isdir(path) or is_zip(head)):
            return None
        with open_collection(path, max_pixels=1 << 62) as files:
            found = any(kind == "DICOM" for _, kind in classify_collection(files))
        return cls.format_name if found else None

    def __init__(self, path: str | os.PathLike, *, max_pixels: int) -> None:
        self.path = os.fspath(path)
        single = os.path.isfile(self.path) and slice_kind(_head(self.path)) == "DICOM"
        self._files: FileCollection = (SingleFile(self.path) if single
                                       else open_collection(self.path, max_pixels=max_pixels))
        self._extracted: str | None = None  # a zipped multi-frame file, unpacked once
        self._extract_lock = threading.Lock()
        try:
            self._layout = self._read_layout()
            self._check_decoder()
        except BaseException:
            self._files.close()
            raise
        layout = self._layout
        check_volume_limit(len(layout.planes), layout.rows, layout.columns, max_pixels)
        self.shape = (layout.samples, len(layout.planes), layout.rows, layout.columns)
        self.dtype = layout.dtype
        self.channel_names = default_channel_names(layout.samples, rgb=True)
        self.voxel_size = layout.voxel_size
        self.unit = "millimeter" if layout.voxel_size else None
        self.metadata = dict(layout.metadata)
        self.random_access = False

    def _read_layout(self) -> DicomLayout:
        members = [member for member, kind in classify_collection(self._files, None)
                   if kind == "DICOM"]
        if not members:
            raise UnsupportedFormat(f"the {self._files.kind} holds no DICOM files")
        with warnings.catch_warnings():  # pydicom warns about odd but readable headers
            warnings.simplefilter("ignore")
            return plan_series([(member, self._header(member)) for member in members])

    def _header(self, member: Member) -> Any:
        """The member's header without pixels (of a zip member, only the head when it holds it)."""
        path = self._files.local_path(member)
        try:
            if path is not None:
                return pydicom.dcmread(path, stop_before_pixels=True)
            data = self._files.read_bytes(member, HEADER_PROBE_BYTES)
            if PIXEL_DATA_TAG not in data and len(data) < member.size:
                data = self._files.read_bytes(member)
            return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        except TilerError:
            raise
        except _DICOM_ERRORS as error:
            raise CorruptImage(f"cannot read DICOM file {member.name!r}: {error}") from error

    def _check_decoder(self) -> None:
        syntax = self._layout.transfer_syntax
        if not syntax:
            return
        try:
            decoder = get_decoder(pydicom.uid.UID(syntax))
        except NotImplementedError as error:
            raise UnsupportedFormat(f"DICOM transfer syntax {syntax} is not supported") from error
        if not decoder.is_available:
            raise UnsupportedFormat(
                f"DICOM transfer syntax {pydicom.uid.UID(syntax).name} needs a decoder that is "
                f"not installed ({'; '.join(decoder.missing_dependencies)})"
            )

    def _read_block(self, z0: int, z1: int, y0: int, y1: int, x0: int, x1: int) -> numpy.ndarray:
        block = numpy.empty((self.shape[0], z1 - z0, y1 - y0, x1 - x0), dtype=self.dtype)
        for z in range(z0, z1):
            plane = self._layout.planes[z]
            block[:, z - z0] = self._plane(plane)[:, y0:y1, x0:x1]
        return block

    def _plane(self, plane: DicomPlane) -> numpy.ndarray:
        """One decoded, rescaled plane as (c, rows, columns)."""
        layout, member = self._layout, plane.member
        path = self._files.local_path(member)
        try:
            if path is None and plane.frame is not None:
                path = self._extract(member)
            source = path if path is not None else io.BytesIO(self._files.read_bytes(member))
            pixels = pixel_array(source, index=plane.frame)
        except TilerError:
            raise
        except (NotImplementedError, RuntimeError) as error:
            raise UnsupportedFormat(f"cannot decode DICOM file {member.name!r}: {error}") from error
        except _DICOM_ERRORS as error:
            raise CorruptImage(f"cannot decode DICOM file {member.name!r}: {error}") from error
        pixels = pixels[numpy.newaxis] if pixels.ndim == 2 else numpy.moveaxis(pixels, -1, 0)
        if pixels.shape != (layout.samples, layout.rows, layout.columns):
            raise CorruptImage(f"DICOM file {member.name!r} holds {pixels.shape} pixels, not "
                               f"{(layout.samples, layout.rows, layout.columns)}")
        return _rescaled(pixels, plane.slope, plane.intercept, self.dtype)

    def _extract(self, member: Member) -> str:
        """Unpack a zipped multi-frame file once into a private temporary folder."""
        with self._extract_lock:
            if self._extracted is None:
                folder = tempfile.mkdtemp(prefix="tiler-dicom-")
                target = os.path.join(folder, "multiframe.dcm")  # never the member's own name
                with open(target, "wb") as handle:
                    self._files.copy_member(member, handle)
                self._extracted = target
            return self._extracted

    def close(self) -> None:
        files = getattr(self, "_files", None)
        if files is not None:
            files.close()
        extracted, self._extracted = getattr(self, "_extracted", None), None
        if extracted:
            shutil.rmtree(os.path.dirname(extracted), ignore_errors=True)


def _rescaled(pixels: numpy.ndarray, slope: float, intercept: float,
              dtype: numpy.dtype) -> numpy.ndarray:
    """slope * stored + intercept in ``dtype`` (exact for integer types)."""
    if (slope, intercept) == (1.0, 0.0):
        return pixels.astype(dtype, copy=False)
    if dtype.kind in "iu":
        values = pixels.astype(numpy.int64) * int(slope) + int(intercept)
        info = numpy.iinfo(dtype)
        return numpy.clip(values, info.min, info.max).astype(dtype)
    return (pixels.astype(numpy.float64) * slope + intercept).astype(dtype)


def _head(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(132)
