"""Synthetic DICOM test data made by code: CT series (a file per slice) and multi-frame files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy

from tiler.synthetic_volume import synthetic_volume_region

__all__ = [
    "dicom_stored_volume",
    "write_synthetic_dicom_series",
    "write_synthetic_multiframe_dicom",
]

#: SOP classes of the files written here.
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
#: Header values of the synthetic study.
STUDY_FIELDS = {"Modality": "CT", "StudyDate": "20240131", "StudyTime": "101500",
                "StudyDescription": "Synthetic phantom", "SeriesDescription": "Synthetic series",
                "Manufacturer": "Tilescope", "ManufacturerModelName": "synthetic",
                "PatientName": "Phantom^Synthetic", "PatientID": "SYN-0001"}


def dicom_stored_volume(shape_zyx: tuple[int, int, int], bits_stored: int = 12,
                        seed: int = 0) -> numpy.ndarray:
    """The stored (pre-rescale) uint16 pixel values of the synthetic series, (z, y, x)."""
    depth, height, width = shape_zyx
    values = synthetic_volume_region(shape_zyx, "float32", 1, seed, 0, depth, 0, height, 0, width)
    scaled = numpy.clip((values[0] + 0.5) / 2.0, 0.0, 1.0) * (2**bits_stored - 1)
    return numpy.rint(scaled).astype(numpy.uint16)


def _dataset(path: Path, sop_class: str, uid_seed: str, **fields: object):
    """A FileDataset with file meta (Explicit VR Little Endian) and the study's fields."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[uid_seed, "instance"])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.SOPClassUID = sop_class
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    for keyword, value in {**STUDY_FIELDS, **fields}.items():
        setattr(dataset, keyword, value)
    return dataset


def _pixel_fields(height: int, width: int, bits_stored: int, slope: float,
                  intercept: float) -> dict[str, object]:
    return {"Rows": height, "Columns": width, "SamplesPerPixel": 1,
            "PhotometricInterpretation": "MONOCHROME2", "BitsAllocated": 16,
            "BitsStored": bits_stored, "HighBit": bits_stored - 1, "PixelRepresentation": 0,
            "RescaleSlope": f"{slope:g}", "RescaleIntercept": f"{intercept:g}"}


def write_synthetic_dicom_series(
    folder: str | os.PathLike, shape_zyx: tuple[int, int, int], *, bits_stored: int = 12,
    slope: float = 1.0, intercept: float = -1024.0, pixel_spacing: tuple[float, float] = (0.5, 0.4),
    slice_spacing: float = 1.25, shuffle: bool = True, seed: int = 0,
    series_uid: str | None = None, name_pattern: str = "IM{index:04d}.dcm",
) -> list[Path]:
    """Write one CT file per slice; return the paths (in file-name order).

    Slice z sits at ImagePositionPatient z * ``slice_spacing`` (mm); with ``shuffle`` the file
    names and InstanceNumbers are assigned in a random order, so only the positions give the
    right order.  Stored values are ``dicom_stored_volume``; the volume a reader must return
    is stored * ``slope`` + ``intercept``.
    """
    from pydicom.uid import generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    depth, height, width = shape_zyx
    stored = dicom_stored_volume(shape_zyx, bits_stored, seed)
    order = numpy.random.default_rng(seed).permutation(depth) if shuffle else numpy.arange(depth)
    series_uid = series_uid or generate_uid(entropy_srcs=[str(seed), "series"])
    study_uid = generate_uid(entropy_srcs=[str(seed), "study"])
    paths = []
    for index, z in enumerate(order):
        path = folder / name_pattern.format(index=index + 1)
        dataset = _dataset(
            path, CT_IMAGE_STORAGE, f"{series_uid}-{z}", StudyInstanceUID=study_uid,
            SeriesInstanceUID=series_uid, SeriesNumber=1, InstanceNumber=index + 1,
            ImagePositionPatient=[-100.0, -80.0, float(z) * slice_spacing],
            ImageOrientationPatient=[1, 0, 0, 0, 1, 0], PixelSpacing=list(pixel_spacing),
            SliceThickness=slice_spacing, **_pixel_fields(height, width, bits_stored, slope,
                                                          intercept))
        dataset.PixelData = numpy.ascontiguousarray(stored[z], dtype="<u2").tobytes()
        dataset.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_synthetic_multiframe_dicom(
    path: str | os.PathLike, shape_zyx: tuple[int, int, int], *, bits_stored: int = 12,
    slope: float = 2.0, intercept: float = -1000.0, pixel_spacing: tuple[float, float] = (0.3, 0.3),
    slice_spacing: float = 0.6, reverse_frames: bool = True, seed: int = 0,
) -> Path:
    """Write an Enhanced-CT-style multi-frame file; frames reversed in z with ``reverse_frames``.

    Spacing and rescale sit in the shared functional groups, positions in the per-frame groups.
    """
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    path = Path(path)
    depth, height, width = shape_zyx
    stored = dicom_stored_volume(shape_zyx, bits_stored, seed)
    frames = list(range(depth))[::-1] if reverse_frames else list(range(depth))
    measures, orientation, transform = Dataset(), Dataset(), Dataset()
    measures.PixelSpacing = list(pixel_spacing)
    measures.SliceThickness = slice_spacing
    measures.SpacingBetweenSlices = slice_spacing
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    transform.RescaleSlope, transform.RescaleIntercept = f"{slope:g}", f"{intercept:g}"
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PlaneOrientationSequence = Sequence([orientation])
    shared.PixelValueTransformationSequence = Sequence([transform])
    per_frame = []
    for z in frames:
        position, group = Dataset(), Dataset()
        position.ImagePositionPatient = [0.0, 0.0, float(z) * slice_spacing]
        group.PlanePositionSequence = Sequence([position])
        per_frame.append(group)
    fields = _pixel_fields(height, width, bits_stored, 1.0, 0.0)
    del fields["RescaleSlope"], fields["RescaleIntercept"]
    dataset = _dataset(path, ENHANCED_CT_IMAGE_STORAGE, f"multiframe-{seed}",
                       NumberOfFrames=depth, SeriesInstanceUID=f"1.2.826.0.1.3680043.10.{seed}",
                       SharedFunctionalGroupsSequence=Sequence([shared]),
                       PerFrameFunctionalGroupsSequence=Sequence(per_frame), **fields)
    dataset.PixelData = numpy.ascontiguousarray(stored[frames], dtype="<u2").tobytes()
    dataset.save_as(path, enforce_file_format=True)
    return path
