"""Contract suite run against every volume reader, plus what is particular to stacks and DICOM."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy
import pytest
import zarr

from tests.tiler.volume_samples import VOLUME_MAKERS, VOLUME_SHAPE, VolumeSample
from tiler.errors import CorruptImage, OutOfRange
from tiler.readers import open_image, sniff_format
from tiler.readers.volume_base import VolumeSource, natural_sort_key
from tiler.synthetic_volume import synthetic_volume, write_synthetic_stack
from tiler.volume_pyramid import write_volume_pyramid


@pytest.fixture(params=sorted(VOLUME_MAKERS))
def volume_sample(request: pytest.FixtureRequest, tmp_path: Path) -> VolumeSample:
    return VOLUME_MAKERS[request.param](tmp_path)


def test_metadata(volume_sample: VolumeSample) -> None:
    with volume_sample.open() as source:
        assert isinstance(source, VolumeSource)
        assert source.format_name == volume_sample.format_name
        assert source.shape == volume_sample.expected.shape
        assert source.dtype == volume_sample.expected.dtype
        assert len(source.channel_names) == source.shape[0]
        assert all(isinstance(name, str) and name for name in source.channel_names)
        if volume_sample.voxel_size is None:
            assert source.voxel_size is None
        else:
            assert source.voxel_size == pytest.approx(volume_sample.voxel_size)
            assert source.unit in ("micrometer", "millimeter")
            assert source.pixel_size == pytest.approx(volume_sample.voxel_size[1:])
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in source.metadata.items())
        assert type(source).__name__ in repr(source)
    if volume_sample.format_name != "RAW":
        assert sniff_format(volume_sample.path) == volume_sample.format_name


def test_whole_volume(volume_sample: VolumeSample) -> None:
    depth, height, width = VOLUME_SHAPE
    with volume_sample.open() as source:
        numpy.testing.assert_array_equal(source.read_block(0, depth, 0, height, 0, width),
                                         volume_sample.expected)


BLOCKS = [
    (3, 17, 5, 40, 7, 59),  # inside, across slices
    (0, 1, 0, 1, 0, 1),  # one voxel
    (35, 36, 0, 45, 0, 61),  # last slice
    (10, 36, 44, 45, 60, 61),  # last row and column, to the end
]


def test_blocks_and_threads(volume_sample: VolumeSample) -> None:
    expected = volume_sample.expected
    with volume_sample.open() as source, ThreadPoolExecutor(4) as pool:
        blocks = list(pool.map(lambda box: source.read_block(*box), BLOCKS * 2))
    for (z0, z1, y0, y1, x0, x1), block in zip(BLOCKS * 2, blocks, strict=True):
        numpy.testing.assert_array_equal(block, expected[:, z0:z1, y0:y1, x0:x1])


@pytest.mark.parametrize("box", [(0, 37, 0, 45, 0, 61), (5, 5, 0, 1, 0, 1), (-1, 2, 0, 1, 0, 1),
                                 (0, 1, 0, 46, 0, 1), (0, 1, 0, 1, 3, 2)])
def test_blocks_outside_are_rejected(volume_sample: VolumeSample, box) -> None:
    with volume_sample.open() as source, pytest.raises(OutOfRange, match="valid"):
        source.read_block(*box)


def test_level_0_of_the_pyramid_is_the_input(volume_sample: VolumeSample, tmp_path: Path) -> None:
    with volume_sample.open() as source:
        summary = write_volume_pyramid(source, tmp_path / "out.ome.zarr", chunk=16,
                                       shard_chunks=2, threads=2)
    assert summary.shape == volume_sample.expected.shape
    stored = zarr.open_group(summary.path, mode="r")["0"][...]
    numpy.testing.assert_array_equal(stored, volume_sample.expected)


def test_natural_sort_order() -> None:
    names = ["slice10.tif", "slice2.tif", "Slice1.tif", "slice100.tif", "slice9.tif"]
    assert sorted(names, key=natural_sort_key) == [
        "Slice1.tif", "slice2.tif", "slice9.tif", "slice10.tif", "slice100.tif"]


def test_stack_slices_are_read_in_natural_order(tmp_path: Path) -> None:
    write_synthetic_stack(tmp_path / "s", (12, 8, 9), "uint8", fmt="png",
                          pattern="img_{index}.{ext}")
    with open_image(tmp_path / "s") as source:
        assert source.slice_names[:3] == ["img_1.png", "img_2.png", "img_3.png"]
        assert source.slice_names[-1] == "img_12.png"
        numpy.testing.assert_array_equal(source.read_block(0, 12, 0, 8, 0, 9),
                                         synthetic_volume((12, 8, 9), "uint8"))


def test_nested_folder_and_hidden_files_are_handled(tmp_path: Path) -> None:
    write_synthetic_stack(tmp_path / "scan" / "recon", (4, 8, 9), "uint16")
    (tmp_path / "scan" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (tmp_path / "scan" / "recon" / "._slice1.tif").write_bytes(b"\0\5\26\7")
    with open_image(tmp_path / "scan") as source:
        assert source.shape == (1, 4, 8, 9)
        assert source.slice_names[0] == "recon/slice1.tif"


def test_dicom_metadata_keeps_acquisition_fields_only(tmp_path: Path) -> None:
    sample = VOLUME_MAKERS["dicom-series-shuffled"](tmp_path)
    with sample.open() as source:
        metadata = source.metadata
    assert metadata["Modality"] == "CT" and metadata["StudyDate"] == "20240131"
    assert metadata["SeriesDescription"] == "Synthetic series"
    assert metadata["Manufacturer"] == "Tilescope"
    assert not any(key.startswith("Patient") for key in metadata)
    assert source.unit == "millimeter"


def test_dicom_sorted_by_position_not_by_name(tmp_path: Path) -> None:
    sample = VOLUME_MAKERS["dicom-series-shuffled"](tmp_path)
    names = sorted(path.name for path in sample.path.iterdir())
    with sample.open() as source:
        first = source.read_block(0, 1, 0, 45, 0, 61)
    numpy.testing.assert_array_equal(first, sample.expected[:, :1])
    assert names[0] == "IM0001.dcm"  # the first file is not the first slice (shuffled)
    assert not numpy.array_equal(first[0, 0], sample.expected[0, 1])


def test_plain_tiff_slices_are_read_straight_from_the_file(tmp_path: Path, monkeypatch) -> None:
    """Uncompressed slices (here big-endian) skip the TIFF reader; a cut one says so."""
    import tifffile

    import tiler.readers.slices
    import tiler.readers.stack

    expected = synthetic_volume((5, 20, 30), "uint16")
    (tmp_path / "s").mkdir()
    for z, plane in enumerate(expected[0]):
        tifffile.imwrite(tmp_path / "s" / f"{z}.tif", plane, byteorder=">", metadata=None)
    tifffile.imwrite(tmp_path / "s" / "5.tif", expected[0, 0], compression="zlib")
    (tmp_path / "s" / "6.tif").write_bytes((tmp_path / "s" / "0.tif").read_bytes())
    with open_image(tmp_path / "s") as source:
        calls = []
        monkeypatch.setattr(tiler.readers.stack, "read_slice", lambda *args: calls.append(args[1])
                            or tiler.readers.slices.read_slice(*args))
        numpy.testing.assert_array_equal(source.read_block(0, 5, 0, 20, 0, 30), expected)
        numpy.testing.assert_array_equal(source.read_block(1, 6, 3, 17, 5, 21)[:, :3],
                                         expected[:, 1:4, 3:17, 5:21])
        assert [member.name for member in calls] == ["5.tif"]  # the compressed one only
        with open(tmp_path / "s" / "6.tif", "r+b") as handle:  # cut after the stack was opened
            handle.truncate(600)
        with pytest.raises(CorruptImage, match="'6.tif' is cut short"):
            source.read_block(6, 7, 0, 20, 0, 30)
