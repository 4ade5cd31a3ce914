"""3D pyramids: xy/xz/yz plane tiles pixel-exact against numpy, plane geometry per level, IIIF/DZI slices."""

from __future__ import annotations

import io
from pathlib import Path

import numpy
import pytest
from PIL import Image

from tiler.deepzoom import dzi_tile, dzi_xml, max_dzi_level
from tiler.display import DisplaySettings
from tiler.errors import InvalidParameter, OutOfRange, TilerError
from tiler.iiif import info_json, parse_request, render_request
from tiler.pyramid import write_pyramid
from tiler.readers.volume_base import VolumeSource
from tiler.render import Pyramid, render_tile
from tiler.volume_levels import plan_volume_levels
from tiler.volume_pyramid import write_volume_pyramid

#: (z, y, x) of the test volume: no side a multiple of the chunk or tile size.
SHAPE = (40, 50, 70)
#: Window that shows uint8 voxels as they are.
EXACT = DisplaySettings(windows=((0.0, 255.0),))


class ArrayVolume(VolumeSource):
    """An in-memory VolumeSource over a (c, z, y, x) array."""

    format_name = "ARRAY"

    def __init__(self, data: numpy.ndarray, voxel_size=None) -> None:
        self.data, self.shape, self.dtype = data, data.shape, data.dtype
        self.channel_names = [f"channel {i}" for i in range(data.shape[0])]
        self.voxel_size, self.unit = voxel_size, "micrometer" if voxel_size else None
        self.metadata = {}

    def _read_block(self, z0, z1, y0, y1, x0, x1) -> numpy.ndarray:
        return self.data[:, z0:z1, y0:y1, x0:x1].copy()


def voxels(shape=SHAPE, channels: int = 1, seed: int = 1) -> numpy.ndarray:
    return numpy.random.default_rng(seed).integers(0, 256, (channels, *shape), dtype=numpy.uint8)


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory):
    """An isotropic uint8 volume (chunks of 16, tiles of 32) and its voxels."""
    data = voxels()
    dest = tmp_path_factory.mktemp("planes") / "iso.ome.zarr"
    write_volume_pyramid(ArrayVolume(data, (1.0, 1.0, 1.0)), dest, chunk=16)
    return Pyramid.open(dest, tile_size=32), data


@pytest.fixture(scope="module")
def anisotropic(tmp_path_factory: pytest.TempPathFactory):
    """z voxels 4x as thick as x/y voxels: z is kept at first, chunks are flat."""
    data = voxels((12, 50, 70), seed=2)
    dest = tmp_path_factory.mktemp("planes") / "aniso.ome.zarr"
    write_volume_pyramid(ArrayVolume(data, (2.0, 0.5, 0.5)), dest, chunk=16)
    return Pyramid.open(dest, tile_size=32), data


def decode(tile: bytes) -> numpy.ndarray:
    return numpy.asarray(Image.open(io.BytesIO(tile)))


def plane_of(data: numpy.ndarray, plane: str, index: int) -> numpy.ndarray:
    """(c, rows, cols) slice of (c, z, y, x) voxels, as the tiler orients planes."""
    return {"xy": lambda: data[:, index], "xz": lambda: data[:, :, index],
            "yz": lambda: data[:, :, :, index]}[plane]()


def test_volume_geometry(volume) -> None:
    pyramid, _ = volume
    assert pyramid.ndim == 3 and pyramid.shape == (1, *SHAPE)
    assert pyramid.levels == [(40, 50, 70), (20, 25, 35), (10, 13, 18), (5, 7, 9)]
    assert pyramid.voxel_size == (1.0, 1.0, 1.0) and pyramid.pixel_size == (1.0, 1.0)
    assert pyramid.plane_shape(0, "xy") == (50, 70) and pyramid.plane_count(0, "xy") == 40
    assert pyramid.plane_shape(0, "xz") == (40, 70) and pyramid.plane_count(0, "xz") == 50
    assert pyramid.plane_shape(0, "yz") == (40, 50) and pyramid.plane_count(0, "yz") == 70
    assert pyramid.plane_shape(2, "yz") == (10, 13) and pyramid.plane_count(2, "xz") == 13
    assert pyramid.plane_scale(0, "xz") == (1.0, 1.0) and pyramid.plane_scale(3, "yz") == (8, 8)
    assert pyramid.tile_grid(0, "xz") == (2, 3) and pyramid.tile_grid(3, "yz") == (1, 1)
    assert Pyramid.open(pyramid.path).tile_size == 256  # 16 * 16: volumes get big tiles


@pytest.mark.parametrize("plane", ["xy", "xz", "yz"])
def test_level0_tiles_are_pixel_exact(volume, plane) -> None:
    pyramid, data = volume
    count = pyramid.plane_count(0, plane)
    rows, cols = pyramid.tile_grid(0, plane)
    for index in (0, count // 2, count - 1):
        expected = plane_of(data, plane, index)[0]
        for row in range(rows):
            for col in range(cols):
                tile = decode(render_tile(pyramid, 0, row, col, fmt="png", plane=plane,
                                          index=index, display=EXACT))
                numpy.testing.assert_array_equal(
                    tile, expected[row * 32:(row + 1) * 32, col * 32:(col + 1) * 32])


@pytest.mark.parametrize("plane", ["xy", "xz", "yz"])
def test_lower_level_tiles_show_that_level(volume, plane) -> None:
    pyramid, _ = volume
    level = pyramid.read_level(1)
    index = pyramid.plane_count(1, plane) - 1
    col = pyramid.tile_grid(1, plane)[1] - 1
    tile = decode(render_tile(pyramid, 1, 0, col, fmt="png", plane=plane, index=index,
                              display=EXACT))
    numpy.testing.assert_array_equal(tile, plane_of(level, plane, index)[0][:32, col * 32:])


@pytest.mark.parametrize(("level", "plane", "row", "col", "size"), [
    (0, "xy", 1, 2, (6, 18)), (0, "xz", 1, 0, (32, 8)), (0, "yz", 1, 1, (18, 8)),
    (1, "xz", 0, 1, (3, 20)), (3, "yz", 0, 0, (7, 5)),
])
def test_edge_tiles_are_smaller_not_padded(volume, level, plane, row, col, size) -> None:
    pyramid, _ = volume
    tile = Image.open(io.BytesIO(render_tile(pyramid, level, row, col, fmt="png", plane=plane)))
    assert tile.size == size  # (width, height)


def test_read_plane_matches_numpy(volume) -> None:
    pyramid, data = volume
    numpy.testing.assert_array_equal(pyramid.read_plane(0, "xz", 17, 3, 39, 5, 66),
                                     data[:, 3:39, 17, 5:66])
    numpy.testing.assert_array_equal(pyramid.read_plane(0, "yz", 69, 0, 40, 0, 50),
                                     data[:, :, :, 69])
    numpy.testing.assert_array_equal(pyramid.read_region(0, 10, 20, 30, 40),
                                     data[:, 20, 10:20, 30:40])  # middle slice by default


def test_anisotropic_volume_keeps_voxel_units(anisotropic) -> None:
    pyramid, data = anisotropic
    plan = plan_volume_levels((12, 50, 70), (2.0, 0.5, 0.5), chunk=16, shard_chunks=8)
    assert pyramid.levels == [level.shape for level in plan]
    assert pyramid.voxel_size == (2.0, 0.5, 0.5) and pyramid.unit == "micrometer"
    assert pyramid.levels[1] == (12, 25, 35)  # z not halved while voxels are flat
    for index, level in enumerate(plan):
        z, y, x = level.shape
        assert pyramid.plane_shape(index, "xz") == (z, x)
        assert pyramid.plane_shape(index, "yz") == (z, y)
        assert pyramid.plane_scale(index, "xz") == (level.scale[0], level.scale[2])
        assert pyramid.plane_scale(index, "xy") == (level.scale[1], level.scale[2])
    assert pyramid.plane_scale(0, "yz") == (2.0, 0.5)
    tile = decode(render_tile(pyramid, 0, 0, 1, fmt="png", plane="xz", index=33, display=EXACT))
    numpy.testing.assert_array_equal(tile, data[0, :, 33, 32:64])  # 12 rows: not resampled
    assert pyramid.level_slice(1, "xy", 7) == 7 and pyramid.level_slice(3, "xy", 7) == 3
    assert pyramid.level_slice(1, "xz", 33) == 16


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda p: render_tile(p, 0, 0, 0, plane="ab"), InvalidParameter,
     "unknown plane 'ab'; use one of xy, xz, yz"),
    (lambda p: render_tile(p, 0, 0, 0, plane="xz", index=50), OutOfRange,
     "slice 50 does not exist in the xz plane at level 0; valid slices are 0 to 49"),
    (lambda p: render_tile(p, 2, 0, 0, plane="yz", index=-1), OutOfRange,
     "valid slices are 0 to 17"),
    (lambda p: render_tile(p, 0, 0, 3, plane="yz"), OutOfRange,
     "valid rows are 0 to 1 and columns 0 to 1"),
    (lambda p: render_tile(p, 9, 0, 0, plane="xz"), OutOfRange, "valid levels are 0 to 3"),
    (lambda p: render_tile(p, 0, 0, 0, index="3"), InvalidParameter, "not a whole number"),
    (lambda p: p.read_plane(0, "xz", 0, 0, 41, 0, 10), OutOfRange,
     r"valid: 0 <= z0 < z1 <= 40, 0 <= x0 < x1 <= 70"),
    (lambda p: p.read_plane(0, "xy", 0, 0, 1, 0, 1, channels=[1]), InvalidParameter,
     "valid channels are 0 to 0"),
])
def test_bad_plane_requests(volume, call, error, message) -> None:
    pyramid, _ = volume
    with pytest.raises(error, match=message) as caught:
        call(pyramid)
    assert isinstance(caught.value, TilerError)


def test_2d_images_have_one_xy_plane(tmp_path: Path, array_source) -> None:
    data = numpy.arange(30 * 40, dtype=numpy.uint16).reshape(1, 30, 40)
    write_pyramid(array_source(data=data, pixel_size=(0.5, 0.25), unit="micrometer"),
                  tmp_path / "flat.ome.zarr", tile_size=16)
    pyramid = Pyramid.open(tmp_path / "flat.ome.zarr")
    assert pyramid.ndim == 2 and pyramid.voxel_size is None and pyramid.levels[0] == (30, 40)
    assert pyramid.plane_shape(0, "xy") == (30, 40) and pyramid.plane_count(1, "xy") == 1
    assert pyramid.plane_scale(1, "xy") == (1.0, 0.5)
    numpy.testing.assert_array_equal(pyramid.read_plane(0, "xy", 0, 3, 20, 5, 33),
                                     data[:, 3:20, 5:33])
    with pytest.raises(InvalidParameter, match="this 2D image has only the xy plane"):
        render_tile(pyramid, 0, 0, 0, plane="xz")
    with pytest.raises(OutOfRange, match="valid slices are 0 to 0"):
        render_tile(pyramid, 0, 0, 0, index=1)


def test_iiif_serves_xy_slices_of_volumes(volume) -> None:
    pyramid, data = volume
    info = info_json(pyramid, "https://x/iiif/3/v", max_area=10**6)
    assert (info["width"], info["height"]) == (70, 50)
    assert info["sizes"][0] == {"width": 9, "height": 7} and info["tiles"][0]["width"] == 32
    full = parse_request((70, 50), "full", "max", "0", "default", "png", max_area=10**6)
    middle = decode(render_request(pyramid, full, display=EXACT))
    numpy.testing.assert_array_equal(middle, data[0, 20])
    numpy.testing.assert_array_equal(decode(render_request(pyramid, full, index=39,
                                                           display=EXACT)), data[0, 39])
    half = parse_request((70, 50), "full", "35,25", "0", "default", "png", max_area=10**6)
    numpy.testing.assert_array_equal(decode(render_request(pyramid, half, index=39,
                                                           display=EXACT)),
                                     pyramid.read_plane(1, "xy", 19, 0, 25, 0, 35)[0])
    with pytest.raises(OutOfRange, match="valid slices are 0 to 39"):
        render_request(pyramid, full, index=40)


def test_deep_zoom_serves_xy_slices_of_volumes(volume) -> None:
    pyramid, _ = volume
    assert 'TileSize="32"><Size Width="70" Height="50"/>' in dzi_xml(pyramid)
    top = max_dzi_level(pyramid)
    assert top == 7
    assert dzi_tile(pyramid, top, 1, 0, "png", index=5) == render_tile(
        pyramid, 0, 0, 1, fmt="png", index=5)
    assert dzi_tile(pyramid, top - 1, 0, 0, "png") == render_tile(
        pyramid, 1, 0, 0, fmt="png", index=10)  # middle slice 20 of level 0 is 10 of level 1
    assert decode(dzi_tile(pyramid, 1, 0, 0, "png")).shape == (1, 2)  # 70 x 50 / 64
