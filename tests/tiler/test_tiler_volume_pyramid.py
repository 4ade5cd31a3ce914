"""3D pyramid writer: level geometry, mean downsampling, sharding, NGFF metadata, atomicity."""

from __future__ import annotations

import os
from pathlib import Path

import numpy
import pytest
import zarr
from PIL import Image

from tiler.display import channel_displays
from tiler.ome_zarr_format import parse_volume_attrs
from tiler.pyramid import PyramidSummary
from tiler.readers import open_image
from tiler.readers.volume_base import VolumeSource
from tiler.render import Pyramid
from tiler.volume_levels import mean_downsample_3d, plan_volume_levels, volume_chunks
from tiler.volume_pyramid import VolumeSummary, plan_units, write_volume_pyramid


class ArrayVolume(VolumeSource):
    """An in-memory VolumeSource; ``fail_at_z`` makes a read starting at that slice fail."""

    format_name = "ARRAY"

    def __init__(self, data: numpy.ndarray, voxel_size=None, *, random_access: bool = True,
                 fail_at_z: int | None = None) -> None:
        self.data, self.shape, self.dtype = data, data.shape, data.dtype
        self.channel_names = [f"channel {i}" for i in range(data.shape[0])]
        self.voxel_size, self.unit = voxel_size, "micrometer" if voxel_size else None
        self.metadata = {"Modality": "CT"}
        self.random_access, self.fail_at_z = random_access, fail_at_z

    def _read_block(self, z0, z1, y0, y1, x0, x1) -> numpy.ndarray:
        if self.fail_at_z is not None and z0 <= self.fail_at_z < z1:
            raise RuntimeError("simulated read failure")
        return self.data[:, z0:z1, y0:y1, x0:x1].copy()


def test_level_plan_isotropic() -> None:
    levels = plan_volume_levels((1024, 1024, 1024), None, chunk=64, shard_chunks=8)
    assert [level.shape for level in levels] == [(1024,) * 3, (512,) * 3, (256,) * 3,
                                                 (128,) * 3, (64,) * 3]
    assert all(level.chunks == (64, 64, 64) for level in levels)
    assert levels[0].shards == (512, 512, 512) and levels[-1].shards == (64, 64, 64)
    assert levels[2].scale == (4.0, 4.0, 4.0) and levels[1].factor == (2, 2, 2)


def test_level_plan_anisotropic_keeps_z_until_xy_catches_up() -> None:
    levels = plan_volume_levels((100, 1000, 1000), (2.0, 1.0, 1.0), chunk=64, shard_chunks=8)
    assert levels[0].chunks == (32, 64, 64)  # near-isotropic in physical units
    assert [level.shape for level in levels] == [(100, 1000, 1000), (100, 500, 500),
                                                 (50, 250, 250), (25, 125, 125), (13, 63, 63)]
    assert [level.factor for level in levels[1:]] == [(1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2)]
    assert levels[1].scale == (2.0, 2.0, 2.0) and levels[1].chunks == (64, 64, 64)
    assert levels[0].shards == (128, 512, 512)  # shard z clipped to the volume (whole chunks)


def test_chunks_follow_physical_spacing() -> None:
    assert volume_chunks((500, 500, 500), (2.0, 1.0, 1.0), 64) == (32, 64, 64)
    assert volume_chunks((500, 500, 500), (1.4, 1.0, 1.0), 64) == (64, 64, 64)
    assert volume_chunks((500, 500, 500), (0.5, 1.0, 1.0), 64) == (128, 64, 64)
    assert volume_chunks((10, 500, 20), (1.0, 1.0, 1.0), 64) == (10, 64, 20)


def test_level_plan_thin_z_and_tiny_xy() -> None:
    assert [lv.shape for lv in plan_volume_levels((3, 300, 300), None, chunk=64,
                                                  shard_chunks=8)] == [
        (3, 300, 300), (2, 150, 150), (1, 75, 75), (1, 38, 38)]
    levels = plan_volume_levels((300, 1, 1), (5.0, 1.0, 1.0), chunk=64, shard_chunks=8)
    assert levels[-1].shape == (38, 1, 1)  # z halves once y and x cannot shrink any more


def test_mean_downsample_3d_known_values() -> None:
    block = numpy.arange(2 * 3 * 3, dtype=numpy.uint16).reshape(1, 2, 3, 3)
    result = mean_downsample_3d(block, 2)
    assert result.dtype == numpy.uint16 and result.shape == (1, 1, 2, 2)
    # z pairs (0..8, 9..17): 2x2x2 means 6.5 -> 6 (half to even), odd edges average what exists
    assert result.tolist() == [[[[6, 8], [11, 12]]]]
    assert mean_downsample_3d(block, 1).tolist() == [[[[2, 4], [6, 8]], [[11, 12], [16, 17]]]]
    big = numpy.full((1, 2, 2, 2), 65535, dtype=numpy.uint16)
    assert mean_downsample_3d(big, 2).tolist() == [[[[65535]]]]
    negative = numpy.array([[[[-3, -4]], [[-5, -6]]]], dtype=numpy.int16)
    assert mean_downsample_3d(negative, 2).tolist() == [[[[-4]]]]
    floats = numpy.array([[[[0.5, 1.0]], [[2.0, 4.0]]]], dtype=numpy.float32)
    assert mean_downsample_3d(floats, 2).tolist() == [[[[1.875]]]]
    with pytest.raises(ValueError):
        mean_downsample_3d(block, 3)


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16", "uint32", "int32",
                                   "float32"])
def test_mean_downsample_3d_equals_a_float_reference(dtype: str) -> None:
    """Integer sums and shifts give the float64 mean rounded half to even, odd edges included."""
    rng = numpy.random.default_rng(11)
    kind = numpy.dtype(dtype)
    for shape in [(2, 5, 7, 9), (1, 1, 3, 1), (1, 4, 1, 6)]:
        if kind.kind == "f":
            data = rng.normal(size=shape).astype(dtype)
        else:
            info = numpy.iinfo(kind)
            data = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
            data[:, ::2] = rng.integers(max(info.min, -3), 4, size=data[:, ::2].shape)  # ties
        for factor_z in (1, 2):
            padded = numpy.full((shape[0], -(-shape[1] // factor_z) * factor_z,
                                 -(-shape[2] // 2) * 2, -(-shape[3] // 2) * 2), numpy.nan)
            padded[:, :shape[1], :shape[2], :shape[3]] = data
            blocks = padded.reshape(shape[0], padded.shape[1] // factor_z, factor_z,
                                    padded.shape[2] // 2, 2, padded.shape[3] // 2, 2)
            mean = numpy.nanmean(blocks, axis=(2, 4, 6))
            expected = (numpy.rint(mean) if kind.kind in "iu" else mean).astype(dtype)
            numpy.testing.assert_array_equal(mean_downsample_3d(data, factor_z), expected)


@pytest.mark.parametrize(
    ("shape", "voxel", "options"),
    [
        ((2, 37, 53, 41), None, {}),
        ((1, 70, 45, 90), (2.0, 1.0, 1.0), {}),  # anisotropic: z kept at level 1
        ((1, 70, 45, 90), (2.0, 1.0, 1.0), {"random_access": False, "budget": 60_000}),
        ((1, 33, 33, 33), (0.5, 1.0, 1.0), {}),  # z finer than xy
        ((1, 5, 200, 10), None, {"dtype": "float32"}),
    ],
)
def test_levels_are_means_of_the_level_above(tmp_path: Path, shape, voxel, options) -> None:
    rng = numpy.random.default_rng(7)
    dtype = options.get("dtype", "uint16")
    data = (rng.normal(size=shape).astype(dtype) if dtype == "float32"
            else rng.integers(0, 60000, size=shape, dtype=dtype))
    source = ArrayVolume(data, voxel, random_access=options.get("random_access", True))
    summary = write_volume_pyramid(source, tmp_path / "v.ome.zarr", chunk=8, shard_chunks=2,
                                   threads=3, memory_budget=options.get("budget", 1 << 30))
    group = zarr.open_group(summary.path, mode="r")
    above = data
    for index, level_shape in enumerate(summary.levels):
        if index:
            halved = level_shape[0] != summary.levels[index - 1][0]
            above = mean_downsample_3d(above, 2 if halved else 1)
        numpy.testing.assert_array_equal(group[str(index)][...], above)
    assert max(summary.levels[-1]) <= 8


def test_summary_and_ngff_metadata(tmp_path: Path) -> None:
    data = numpy.random.default_rng(1).integers(0, 4000, (2, 40, 50, 60), dtype=numpy.uint16)
    summary = write_volume_pyramid(ArrayVolume(data, (2.0, 0.5, 0.5)), tmp_path / "m.ome.zarr",
                                   chunk=16, name="scan")
    assert isinstance(summary, VolumeSummary) and isinstance(summary, PyramidSummary)
    assert summary.shape == (2, 40, 50, 60) and summary.dtype == "uint16"
    assert summary.voxel_size == (2.0, 0.5, 0.5) and summary.pixel_size == (0.5, 0.5)
    assert summary.chunks[0] == (4, 16, 16) and summary.metadata == {"Modality": "CT"}
    codec = zarr.open_array(Path(summary.path) / "0").metadata.codecs[0].codecs[1]
    assert (codec.cname.value, codec.clevel, codec.shuffle.value) == ("zstd", 1, "bitshuffle")
    metadata = parse_volume_attrs(zarr.open_group(summary.path, mode="r").attrs.asdict())
    assert metadata.name == "scan" and metadata.unit == "micrometer"
    # z (4x the xy size) is kept until halving it leaves it <= 1.5x the xy size
    assert metadata.scales[:4] == [(2.0, 0.5, 0.5), (2.0, 1.0, 1.0), (2.0, 2.0, 2.0),
                                   (4.0, 4.0, 4.0)]
    lowest = zarr.open_group(summary.path, mode="r")[str(len(summary.levels) - 1)][...]
    expected = channel_displays(lowest, data.dtype, ["channel 0", "channel 1"])
    assert summary.windows == [(d.start, d.end) for d in expected]
    assert [c.label for c in metadata.channels] == ["channel 0", "channel 1"]
    with Image.open(Path(summary.path) / "thumbnail.png") as thumbnail:
        assert thumbnail.size == (60, 50)


def test_ome_zarr_py_reads_the_volume(tmp_path: Path) -> None:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    data = numpy.random.default_rng(2).integers(0, 255, (1, 30, 70, 80), dtype=numpy.uint8)
    summary = write_volume_pyramid(ArrayVolume(data, (1.5, 0.5, 0.5)), tmp_path / "r.ome.zarr",
                                   chunk=16)
    node = next(iter(Reader(parse_url(summary.path))()))
    assert [axis["name"] for axis in node.metadata["axes"]] == ["c", "z", "y", "x"]
    assert node.metadata["axes"][1] == {"name": "z", "type": "space", "unit": "micrometer"}
    scales = [transforms[0]["scale"] for transforms in node.metadata["coordinateTransformations"]]
    assert scales[:3] == [[1.0, 1.5, 0.5, 0.5], [1.0, 1.5, 1.0, 1.0], [1.0, 3.0, 2.0, 2.0]]
    assert [tuple(level.shape) for level in node.data] == [(1, *s) for s in summary.levels]
    numpy.testing.assert_array_equal(numpy.asarray(node.data[0]), data)


def test_file_count_stays_low(tmp_path: Path) -> None:
    # 256^3 with 16^3 chunks and 8-chunk shards: the layout of a 1024^3 volume at 64/512
    data = numpy.random.default_rng(3).integers(0, 1000, (1, 256, 256, 256), dtype=numpy.uint16)
    summary = write_volume_pyramid(ArrayVolume(data), tmp_path / "f.ome.zarr", chunk=16,
                                   shard_chunks=8)
    assert summary.levels[-1] == (16, 16, 16)
    files = [path for path in Path(summary.path).rglob("*") if path.is_file()]
    assert summary.file_count == len(files)
    # 8 shards on each of levels 0-3, 1 on level 4, 6 zarr.json, the thumbnail (300 allowed)
    assert summary.file_count <= 4 * 8 + 1 + 6 + 1, summary.file_count


def test_memory_budget_shapes_the_work() -> None:
    big = ArrayVolume(numpy.zeros((1, 1, 1, 1), numpy.uint16))
    big.shape = (1, 512, 1024, 1024)  # only the shape and type are planned with
    plan = plan_units(big, 64, 8, 256 << 20, threads=8)
    assert plan.levels[0].shards == (512, 512, 512) and plan.unit == (512, 512, 512)
    assert plan.workers == 2  # 4 layers of 64 x 512 x 512 x 2 bytes each = 128 MiB
    small = plan_units(big, 64, 8, 40 << 20, threads=8)
    assert small.levels[0].shards == (256, 256, 256) and small.workers == 1
    big.whole_rows = True  # type: ignore[attr-defined]
    rows = plan_units(big, 64, 8, 1 << 30, threads=2)
    assert rows.unit == (512, 512, 1024) and rows.workers == 2  # the width, two at once
    big.random_access = False
    wide = plan_units(big, 64, 8, 1 << 30, threads=2)
    assert wide.unit == (512, 1024, 1024)  # whole slices when they must be decoded whole
    with pytest.raises(ValueError, match="too small"):
        plan_units(big, 64, 8, 1 << 10, threads=2)


def test_progress_and_atomic_publish(tmp_path: Path) -> None:
    data = numpy.ones((1, 20, 30, 40), numpy.uint8)
    calls: list[float] = []
    dest = tmp_path / "p.ome.zarr"
    write_volume_pyramid(ArrayVolume(data), dest, chunk=8, shard_chunks=1,
                         progress=lambda f, m: calls.append(f))
    assert calls == sorted(calls) and calls[-1] == 1.0 and len(calls) > 3
    with pytest.raises(FileExistsError):
        write_volume_pyramid(ArrayVolume(data), dest, chunk=8)


def test_failure_leaves_nothing_behind(tmp_path: Path) -> None:
    data = numpy.ones((1, 40, 30, 40), numpy.uint8)
    with pytest.raises(RuntimeError, match="simulated"):
        write_volume_pyramid(ArrayVolume(data, fail_at_z=33), tmp_path / "x.ome.zarr", chunk=8)
    assert os.listdir(tmp_path) == []


def test_volume_pyramids_reopen_as_volumes(tmp_path: Path) -> None:
    data = numpy.random.default_rng(4).integers(0, 9, (1, 12, 20, 30), dtype=numpy.int16)
    summary = write_volume_pyramid(ArrayVolume(data, (1.0, 1.0, 1.0)), tmp_path / "o.ome.zarr",
                                   chunk=8)
    assert Pyramid.open(summary.path).ndim == 3
    with open_image(summary.path) as source:
        assert isinstance(source, VolumeSource) and source.format_name == "OME-ZARR"
        assert source.voxel_size == (1.0, 1.0, 1.0) and source.unit == "micrometer"
        numpy.testing.assert_array_equal(source.read_block(0, 12, 0, 20, 0, 30), data)


def test_2d_ome_zarr_opens_as_an_image(tmp_path: Path) -> None:
    from tiler.pyramid import write_pyramid
    from tiler.readers.base import ImageSource

    with _image(tmp_path) as image:
        summary = write_pyramid(image, tmp_path / "flat.ome.zarr", tile_size=16)
    with open_image(summary.path) as source:
        assert isinstance(source, ImageSource) and source.format_name == "OME-ZARR"
        assert source.shape == (1, 40, 50)
        numpy.testing.assert_array_equal(source.read_region(0, 40, 0, 50),
                                         numpy.arange(2000, dtype=numpy.uint16).reshape(1, 40, 50))


def _image(tmp_path: Path):
    import tifffile

    path = tmp_path / "flat.tif"
    tifffile.imwrite(path, numpy.arange(2000, dtype=numpy.uint16).reshape(40, 50))
    return open_image(path)
