"""Instructions per rendered tile, counted by valgrind's callgrind (repeatable on a busy machine):

    python benchmarks/tiles_callgrind.py PYRAMID TILES_JSON [--passes 2] [--annotate]

TILES_JSON is the benchmark's list of [level, row, col] (`tiles.py --workdir DIR --keep` leaves it
in DIR/render_tiles.json).  For "warm" and "cold", the tiles are rendered once to warm up and then
`--passes` more times, and once with no extra pass; the difference of the two runs' totals, over
the extra tiles, is the cost per tile.  "cold" empties the decoded-chunk cache and the shard-index
caches before each pass; the files stay in the page cache, so only CPU work is counted.
`--annotate` also prints the functions that take the most instructions per tile.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def render(pyramid_path: str, tiles_path: str, mode: str, passes: int) -> None:
    """The measured program: render every tile once, then ``passes`` more times."""
    sys.path.insert(0, str(REPO))
    from tiler import chunk_cache
    from tiler.render import open_pyramid, render_tile

    pyramid = open_pyramid(pyramid_path)
    tiles = [tuple(tile) for tile in json.loads(Path(tiles_path).read_text())]
    for tile in tiles:
        render_tile(pyramid, *tile)
    for _ in range(passes):
        if mode == "cold":
            if (cache := chunk_cache.default_chunk_cache()) is not None:
                cache.clear()
            for reader in pyramid._shard_readers:
                if reader is not None:
                    reader._indexes.clear()
        for tile in tiles:
            render_tile(pyramid, *tile)


def count(pyramid: str, tiles: str, mode: str, passes: int, out: Path) -> int:
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__,
               "--run", mode, str(passes), pyramid, tiles]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    match = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode or not match:
        raise SystemExit(f"valgrind failed:\n{done.stderr[-2000:]}")
    return int(match.group(1))


def functions(path: Path) -> dict[str, int]:
    """Instructions per function (exclusive) from a callgrind output file."""
    text = subprocess.run(["callgrind_annotate", "--threshold=100", str(path)], capture_output=True,
                          text=True, check=False).stdout
    result: dict[str, int] = {}
    for line in text.splitlines():
        match = re.match(r"\s*([\d,]+) \([^)]*\)\s+(.*)", line)
        if match and "PROGRAM TOTALS" not in line:
            name = re.sub(r"'\d+", "", match.group(2).split(" [")[0]).rsplit(":", 1)[-1]
            result[name] = result.get(name, 0) + int(match.group(1).replace(",", ""))
    return result


def main() -> None:
    if sys.argv[1:2] == ["--run"]:
        mode, passes, pyramid, tiles = sys.argv[2:6]
        render(pyramid, tiles, mode, int(passes))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pyramid")
    parser.add_argument("tiles")
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--annotate", action="store_true")
    options = parser.parse_args()
    count_tiles = len(json.loads(Path(options.tiles).read_text())) * options.passes
    with tempfile.TemporaryDirectory() as scratch:
        for mode in ("warm", "cold"):
            base, more = Path(scratch, f"{mode}0.out"), Path(scratch, f"{mode}.out")
            total = count(options.pyramid, options.tiles, mode, options.passes, more)
            per_tile = (total - count(options.pyramid, options.tiles, mode, 0, base)) / count_tiles
            print(f"{mode}: {per_tile / 1e6:.2f} M instructions per tile")
            if options.annotate:
                before, after = functions(base), functions(more)
                spent = sorted(((after.get(k, 0) - before.get(k, 0)) / count_tiles, k) for k in after)
                for value, name in reversed(spent[-15:]):
                    print(f"  {value / 1e3:8.1f} K  {name}")


if __name__ == "__main__":
    main()
