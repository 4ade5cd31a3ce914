"""DICOM headers to a volume layout: one series, slices in order, spacing, rescale, metadata."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy

from tiler.errors import CorruptImage, UnsupportedFormat
from tiler.safe_archive import Member

__all__ = ["METADATA_KEYWORDS", "DicomLayout", "DicomPlane", "plan_series"]

#: Header fields kept as dataset metadata.  Nothing that identifies a patient is kept.
METADATA_KEYWORDS = (
    "Modality", "StudyDate", "StudyTime", "StudyDescription", "SeriesDate", "SeriesDescription",
    "SeriesNumber", "Manufacturer", "ManufacturerModelName", "BodyPartExamined", "ProtocolName",
    "SliceThickness", "KVP", "ConvolutionKernel", "PhotometricInterpretation",
    "StudyInstanceUID", "SeriesInstanceUID",
)
#: Media Storage Directory (DICOMDIR): an index, not an image.
DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
#: Header fields every slice of a series must share.
SHARED_FIELDS = ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "PixelRepresentation")
#: Slices closer than this (in mm along the slice normal) are at the same position.
SAME_POSITION_MM = 1e-4


@dataclass(frozen=True)
class DicomPlane:
    """One z plane: which file, which frame of it (None: single-frame), and its rescale."""

    member: Member
    frame: int | None
    slope: float
    intercept: float


@dataclass(frozen=True)
class DicomLayout:
    """Everything a reader needs: planes in z order, pixel types, voxel size and metadata."""

    planes: list[DicomPlane]
    rows: int
    columns: int
    samples: int
    stored_dtype: numpy.dtype
    dtype: numpy.dtype
    voxel_size: tuple[float, float, float] | None
    metadata: dict[str, str]
    transfer_syntax: str


def plan_series(headers: list[tuple[Member, Any]]) -> DicomLayout:
    """Lay out the image headers (pydicom Datasets read without pixels) of one series.

    Raises UnsupportedFormat for no images, several series or a series of multi-frame files,
    and CorruptImage for slices that disagree in size or type or share a position.
    """
    images = [(member, ds) for member, ds in headers
              if "Rows" in ds and "Columns" in ds and ds.get("SOPClassUID") != DICOMDIR_CLASS]
    if not images:
        raise UnsupportedFormat("the DICOM files hold no images")
    _check_one_series(images)
    first_member, first = images[0]
    for member, ds in images[1:]:
        for keyword in SHARED_FIELDS:
            if ds.get(keyword) != first.get(keyword):
                raise CorruptImage(
                    f"DICOM slice {member.name!r} has {keyword} {ds.get(keyword)} but "
                    f"{first_member.name!r} has {first.get(keyword)}; the slices of a series "
                    "must match in size and pixel type"
                )
    frames = [int(ds.get("NumberOfFrames", 1) or 1) for _, ds in images]
    if len(images) > 1 and max(frames) > 1:
        raise UnsupportedFormat("a series of several multi-frame DICOM files is not supported")
    numbers: list = []
    if frames[0] > 1:
        planes, positions, orientation = _frame_planes(first_member, first, frames[0])
    else:
        planes = [DicomPlane(m, None, *_rescale(ds, None)) for m, ds in images]
        positions = [_floats(ds.get("ImagePositionPatient"), 3) for _, ds in images]
        orientation = _floats(first.get("ImageOrientationPatient"), 6)
        numbers = [ds.get("InstanceNumber") for _, ds in images]
    planes, z_spacing = _order(planes, positions, orientation, numbers)
    pixel_spacing = _floats(_functional(first, None, "PixelMeasuresSequence", "PixelSpacing"), 2)
    if z_spacing is None:
        for keyword in ("SpacingBetweenSlices", "SliceThickness"):
            value = _floats([_functional(first, None, "PixelMeasuresSequence", keyword)], 1)
            if value and value[0] > 0:
                z_spacing = value[0]
                break
    voxel_size = None
    if pixel_spacing and min(pixel_spacing) > 0:
        voxel_size = (z_spacing or pixel_spacing[1], pixel_spacing[0], pixel_spacing[1])
    stored, dtype = _pixel_types(first, planes)
    return DicomLayout(
        planes=planes, rows=int(first.Rows), columns=int(first.Columns),
        samples=int(first.get("SamplesPerPixel", 1) or 1), stored_dtype=stored, dtype=dtype,
        voxel_size=voxel_size, metadata=_metadata(first),
        transfer_syntax=str(first.file_meta.get("TransferSyntaxUID", ""))
        if hasattr(first, "file_meta") else "",
    )


def _check_one_series(images: list[tuple[Member, Any]]) -> None:
    series = Counter(str(ds.get("SeriesInstanceUID", "")) for _, ds in images)
    if len(series) > 1:
        described = "; ".join(f"{uid or '(no UID)'} ({count} files)"
                              for uid, count in series.most_common())
        raise UnsupportedFormat(
            f"the upload mixes {len(series)} DICOM series: {described}; upload one series "
            "at a time"
        )


def _frame_planes(member: Member, ds: Any, count: int
                  ) -> tuple[list[DicomPlane], list[list[float] | None], list[float] | None]:
    """Planes, positions and orientation of the frames of one multi-frame file."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    if per_frame and len(per_frame) != count:
        raise CorruptImage(f"DICOM file {member.name!r} declares {count} frames but describes "
                           f"{len(per_frame)}")
    planes = [DicomPlane(member, index, *_rescale(ds, index)) for index in range(count)]
    positions = [_floats(_functional(ds, index, "PlanePositionSequence",
                                     "ImagePositionPatient"), 3) for index in range(count)]
    orientation = _floats(_functional(ds, 0, "PlaneOrientationSequence",
                                      "ImageOrientationPatient"), 6)
    return planes, positions, orientation


def _functional(ds: Any, frame: int | None, sequence: str, keyword: str) -> Any:
    """``keyword`` from frame ``frame``'s functional group, the shared group, or the top level."""
    groups = []
    if frame is not None and ds.get("PerFrameFunctionalGroupsSequence"):
        groups.append(ds.PerFrameFunctionalGroupsSequence[frame])
    if ds.get("SharedFunctionalGroupsSequence"):
        groups.append(ds.SharedFunctionalGroupsSequence[0])
    for group in groups:
        items = group.get(sequence)
        if items and keyword in items[0]:
            return items[0].get(keyword)
    return ds.get(keyword)


def _rescale(ds: Any, frame: int | None) -> tuple[float, float]:
    slope = _functional(ds, frame, "PixelValueTransformationSequence", "RescaleSlope")
    intercept = _functional(ds, frame, "PixelValueTransformationSequence", "RescaleIntercept")
    return (float(slope) if slope not in (None, "") else 1.0,
            float(intercept) if intercept not in (None, "") else 0.0)


def _floats(value: Any, count: int) -> list[float] | None:
    """``count`` floats from a DICOM multi-value, or None when absent or malformed."""
    try:
        values = [float(item) for item in value]
    except (TypeError, ValueError):
        return None
    return values if len(values) == count and all(map(math.isfinite, values)) else None


def _order(planes: list[DicomPlane], positions: list, orientation: list[float] | None,
           numbers: list) -> tuple[list[DicomPlane], float | None]:
    """Planes sorted along the slice normal (else by InstanceNumber), and the z spacing."""
    if orientation and all(positions):
        normal = numpy.cross(orientation[:3], orientation[3:])
        depth = [float(numpy.dot(position, normal)) for position in positions]
        order = sorted(range(len(planes)), key=depth.__getitem__)
        steps = numpy.diff([depth[i] for i in order])
        if len(steps) and steps.min() < SAME_POSITION_MM:
            at = int(steps.argmin())
            raise CorruptImage(
                f"DICOM slices {_plane_name(planes[order[at]])} and "
                f"{_plane_name(planes[order[at + 1]])} are at the same position; the series "
                "holds more than one volume"
            )
        spacing = float(f"{numpy.median(steps):.9g}") if len(steps) else None  # drop float noise
        return [planes[i] for i in order], spacing
    if len(numbers) == len(planes) and all(number is not None for number in numbers):
        order = sorted(range(len(planes)), key=lambda i: int(numbers[i]))
        return [planes[i] for i in order], None
    return planes, None


def _plane_name(plane: DicomPlane) -> str:
    suffix = "" if plane.frame is None else f" frame {plane.frame}"
    return f"{plane.member.name!r}{suffix}"


def _pixel_types(ds: Any, planes: list[DicomPlane]) -> tuple[numpy.dtype, numpy.dtype]:
    """(stored pixel type, type after rescaling): integers when the rescale keeps them exact."""
    bits = int(ds.get("BitsAllocated", 0) or 0)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    if bits not in (8, 16, 32):
        raise UnsupportedFormat(f"DICOM pixels of {bits} bits are not supported")
    stored = numpy.dtype(f"{'i' if signed else 'u'}{bits // 8}")
    rescales = {(plane.slope, plane.intercept) for plane in planes}
    if rescales == {(1.0, 0.0)} or int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        return stored, stored
    if not all(s.is_integer() and i.is_integer() for s, i in rescales):
        return stored, numpy.dtype(numpy.float32)
    bits_stored = int(ds.get("BitsStored", bits) or bits)
    low, high = (-(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1) if signed else (
        0, 2**bits_stored - 1)
    ends = [value * slope + intercept for slope, intercept in rescales for value in (low, high)]
    for candidate in ("uint8", "int8", "uint16", "int16", "uint32", "int32"):
        info = numpy.iinfo(candidate)
        if info.min <= min(ends) and max(ends) <= info.max:
            return stored, numpy.dtype(candidate)
    return stored, numpy.dtype(numpy.float32)


def _metadata(ds: Any) -> dict[str, str]:
    metadata = {}
    for keyword in METADATA_KEYWORDS:
        value = ds.get(keyword)
        if value not in (None, ""):
            metadata[keyword] = str(value)
    return metadata
