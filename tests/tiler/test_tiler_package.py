"""Package rules (no web/queue/database imports, docstrings, sizes) and synthetic data."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import tifffile

import tiler
from tiler.synthetic import synthetic_image, synthetic_region, write_synthetic_tiff

PACKAGE = Path(tiler.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))
FORBIDDEN = ("flask", "portal", "workers", "redis", "rq", "sqlalchemy")


@pytest.mark.parametrize("module", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_rules(module: Path) -> None:
    source = module.read_text()
    tree = ast.parse(source)
    docstring = ast.get_docstring(tree, clean=False)
    assert docstring and "\n" not in docstring.strip(), "needs a one-line module docstring"
    assert len(source.splitlines()) <= 400, "split modules that grow past 400 lines"
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN, f"{module.name} imports {name}"


def test_importing_everything_pulls_in_no_web_stack() -> None:
    code = (
        "import sys, tiler, tiler.readers, tiler.pyramid, tiler.render, tiler.synthetic\n"
        f"bad = [m for m in {FORBIDDEN!r} if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_lazy_top_level_names() -> None:
    assert tiler.write_pyramid.__module__ == "tiler.pyramid"
    assert tiler.open_image.__module__ == "tiler.readers"
    assert "render_tile" in dir(tiler)
    with pytest.raises(AttributeError):
        tiler.no_such_name  # noqa: B018


def test_synthetic_regions_match_the_whole_image() -> None:
    whole = synthetic_image((90, 130), "uint16", channels=2, seed=4)
    assert whole.shape == (2, 90, 130) and whole.dtype == numpy.uint16
    numpy.testing.assert_array_equal(
        synthetic_region((90, 130), "uint16", 2, 4, 17, 60, 33, 129), whole[:, 17:60, 33:129]
    )
    assert not numpy.array_equal(whole[0], whole[1])
    assert not numpy.array_equal(whole, synthetic_image((90, 130), "uint16", channels=2, seed=5))


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32"])
def test_synthetic_tiles_are_not_blank(dtype) -> None:
    image = synthetic_image((512, 512), dtype)
    for y in range(0, 512, 256):
        for x in range(0, 512, 256):
            tile = image[0, y:y + 256, x:x + 256].astype(float)
            assert tile.std() > 0.01 * (float(image.max()) - float(image.min()))
    if dtype == "int16":
        assert image.min() < 0


@pytest.mark.parametrize("tile", [64, None])
def test_write_synthetic_tiff_layout(tmp_path: Path, tile) -> None:
    path = write_synthetic_tiff(tmp_path / "s.tif", (200, 150), "uint8", channels=3, tile=tile,
                                bigtiff=True)
    with tifffile.TiffFile(path) as tiff:
        page = tiff.pages[0]
        assert tiff.is_bigtiff and page.is_tiled == bool(tile)
        assert tiff.series[0].shape == (3, 200, 150)
        numpy.testing.assert_array_equal(tiff.asarray(), synthetic_image((200, 150), "uint8", 3))


def test_write_synthetic_tiff_rejects_bad_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="channels=3"):
        write_synthetic_tiff(tmp_path / "a.tif", (10, 10), rgb=True)
    with pytest.raises(ValueError, match="zlib"):
        write_synthetic_tiff(tmp_path / "b.tif", (10, 10), tile=None, compression="lzw")
