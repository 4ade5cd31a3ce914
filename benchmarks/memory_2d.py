"""Memory bound: a generated 65536² uint8 tiled BigTIFF (4 GiB of pixels) converts in <= 512 MB."""

# .venv/bin/python benchmarks/memory_2d.py                 # 65536², needs ~6 GB of disk
# .venv/bin/python benchmarks/memory_2d.py --size 32768
#
# The conversion runs in its own process (peak RSS from os.wait4); afterwards a few regions of
# levels 0 and 1 are checked against the input, and the input and output are deleted
# (unless --keep).

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import generate, print_table, run_tool  # noqa: E402

#: The issue's bound for a 2D image of any size.
LIMIT_BYTES = 512 * 10**6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=65536, help="image side in px")
    parser.add_argument("--workdir", default="/tmp/tilescope-bench")
    parser.add_argument("--keep", action="store_true", help="keep input and output")
    options = parser.parse_args()
    workdir = Path(options.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(workdir).free
    need = options.size**2 * 1.3  # compressed input (~0.6x) + output (~0.7x)
    if free < need:
        sys.exit(f"not enough disk in {workdir}: {free / 1e9:.1f} GB free, "
                 f"~{need / 1e9:.1f} GB needed")
    source = generate("2d-fast", workdir / f"input_2d_{options.size}_fast.tif", options.size)
    output = workdir / "out_memory.ome.zarr"
    shutil.rmtree(output, ignore_errors=True)
    try:
        row = run_tool("tilescope", source, output)
        print_table([row], f"{options.size} x {options.size} uint8 "
                           f"({options.size**2 / 2**30:.1f} GiB of pixels, "
                           f"{source.stat().st_size / 1e9:.2f} GB on disk)")
        if not row.ok:
            sys.exit(1)
        peak = row.peak_rss_mib * 2**20
        verdict = "met" if peak <= LIMIT_BYTES else "NOT met"
        print(f"peak RSS {peak / 1e6:.0f} MB, limit {LIMIT_BYTES / 1e6:.0f} MB: {verdict}; "
              f"{options.size**2 / row.wall_s / 1e6:.0f} Mpx/s")
        print(_verify(source, output))
    finally:
        if not options.keep:
            shutil.rmtree(output, ignore_errors=True)
            source.unlink(missing_ok=True)


def _verify(source: Path, output: Path, samples: int = 6) -> str:
    """Compare random 1024² regions of level 0 (and 512² of level 1) with the input."""
    import numpy

    from tiler.downsample import mean_downsample_2x
    from tiler.readers import open_image
    from tiler.render import Pyramid

    pyramid = Pyramid.open(output)
    rng = numpy.random.default_rng(1)
    with open_image(source) as image:
        _, height, width = image.shape
        for _ in range(samples):
            y, x = (int(rng.integers(0, side - 1024)) // 2 * 2 for side in (height, width))
            block = image.read_region(y, y + 1024, x, x + 1024)
            if not numpy.array_equal(pyramid.read_region(0, y, y + 1024, x, x + 1024), block):
                return f"MISMATCH at level 0, y={y}, x={x}"
            level1 = pyramid.read_region(1, y // 2, y // 2 + 512, x // 2, x // 2 + 512)
            if not numpy.array_equal(level1, mean_downsample_2x(block)):
                return f"MISMATCH at level 1, y={y // 2}, x={x // 2}"
    return f"verified: {samples} random 1024² regions of level 0 and their level-1 means"


if __name__ == "__main__":
    main()
