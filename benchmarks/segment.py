"""Segmentation time and memory: scikit-image on the whole array vs segment_pyramid."""

# .venv/bin/python benchmarks/segment.py                        # 16384² uint8 and 512³ uint16
# .venv/bin/python benchmarks/segment.py --size2d 4096 --size3d 128   # small, seconds
# .venv/bin/python benchmarks/segment.py --size3d 0 --budget 256 --small-budget 64
#
# Task: Otsu threshold + connected components (connectivity 1) + per-object area, centroid,
# bbox and mean intensity.  (a) scikit-image on the whole in-memory array (threshold_otsu,
# label, regionprops_table); (b) tiler.segmentation.segment_pyramid on the image's pyramid
# (it also writes the label pyramid, measurements.csv and objects.npy).  Inputs (many disks or
# balls on a noisy background) are generated first by a child process, not timed, as a pyramid
# and a .npy of the same pixels.  Every run is a fresh interpreter; this process samples the
# RSS and PSS of the run's whole process tree (worker processes included) every 50 ms and
# reports the peaks and the CPU time of all its processes (as last sampled); "compute" is the
# time of the calls alone, measured inside the run.

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

#: Targets: segment_pyramid's time at most this times scikit-image's, its peak memory at most
#: this share of scikit-image's.
TARGET_TIME_RATIO = 1.5
TARGET_MEMORY_RATIO = 0.25
#: Sampling period of the process-tree memory, seconds.
SAMPLE_SECONDS = 0.05
MIB = 2**20


@dataclass
class Run:
    """One measured run."""

    label: str
    wall_s: float
    compute_s: float
    cpu_s: float
    peak_rss_mib: float
    peak_pss_mib: float
    objects: int
    note: str = ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size2d", type=int, default=16384, help="image side, px (0: skip)")
    parser.add_argument("--size3d", type=int, default=512, help="volume side, voxels (0: skip)")
    parser.add_argument("--budget", type=int, default=1024,
                        help="memory_budget, MiB (segment_pyramid's default: 1024)")
    parser.add_argument("--small-budget", type=int, default=64,
                        help="memory_budget of the run on an image larger than it, MiB")
    parser.add_argument("--processes", type=int, default=None, help="worker processes")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each (ratios: best)")
    parser.add_argument("--workdir", default="/tmp/tilescope-bench")
    parser.add_argument("--keep", action="store_true", help="keep inputs and outputs")
    options = parser.parse_args()
    workdir = Path(options.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at start")
    for kind, size in (("2d", options.size2d), ("3d", options.size3d)):
        if size:
            _bench(workdir, kind, size, options)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


def _bench(workdir: Path, kind: str, size: int, options: argparse.Namespace) -> None:
    image = workdir / f"segment_{kind}_{size}.ome.zarr"
    pixels = image.with_suffix(".npy")
    if not image.exists():
        subprocess.run([sys.executable, __file__, "generate", kind, str(image), str(size)],
                       check=True)
    output = workdir / f"segment_{kind}_{size}_out"
    extra = [] if options.processes is None else ["--processes", str(options.processes)]
    runs: list[Run] = []
    for _ in range(options.repeat):
        runs.append(_measure("scikit-image", ["skimage", str(pixels), str(output)]))
        for label, budget in (("segment_pyramid", options.budget),
                              (f"segment_pyramid {options.small_budget} MiB",
                               options.small_budget)):
            shutil.rmtree(output, ignore_errors=True)
            output.mkdir()
            runs.append(_measure(label, ["tilescope", str(image), str(output),
                                         "--budget", str(budget), *extra]))
    if not options.keep:
        shutil.rmtree(output, ignore_errors=True)
    shape = f"{size}²" if kind == "2d" else f"{size}³"
    dtype = "uint8" if kind == "2d" else "uint16"
    print(f"\n{shape} {dtype} ({pixels.stat().st_size / MIB:.0f} MiB of pixels)")
    header = (f"{'run':<28}{'wall s':>8}{'compute s':>11}{'CPU s':>8}{'peak RSS MiB':>14}"
              f"{'peak PSS MiB':>14}{'objects':>9}")
    print(header)
    print("-" * len(header))
    for run in runs:
        print(f"{run.label:<28}{run.wall_s:>8.1f}{run.compute_s:>11.1f}{run.cpu_s:>8.1f}"
              f"{run.peak_rss_mib:>14.0f}{run.peak_pss_mib:>14.0f}{run.objects:>9}"
              + (f"  {run.note}" if run.note else ""))
    best = {run.label: min((other for other in runs if other.label == run.label),
                           key=lambda other: other.compute_s) for run in runs}
    reference = best.pop("scikit-image")
    for run in best.values():
        if run.objects == 0 and reference.objects:
            print(f"{run.label}: FAILED (see the table), no ratio")
            continue
        time_ratio = run.compute_s / reference.compute_s
        memory_ratio = run.peak_pss_mib / reference.peak_pss_mib
        print(f"{run.label}: time {time_ratio:.2f}x scikit-image's (target <= "
              f"{TARGET_TIME_RATIO}: {'met' if time_ratio <= TARGET_TIME_RATIO else 'NOT met'}), "
              f"peak PSS {memory_ratio:.2f}x (target <= {TARGET_MEMORY_RATIO}: "
              f"{'met' if memory_ratio <= TARGET_MEMORY_RATIO else 'NOT met'})")
    if not options.keep:
        shutil.rmtree(image, ignore_errors=True)
        pixels.unlink(missing_ok=True)


def _measure(label: str, arguments: list[str]) -> Run:
    """Run this script with ``arguments`` in a child; sample its process tree's memory."""
    import psutil

    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, __file__, "run", *arguments],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak_rss = peak_pss = 0
    cpu: dict[int, float] = {}  # CPU seconds of every process of the tree, as last seen
    root = psutil.Process(process.pid)
    while process.poll() is None:
        rss = pss = 0
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for member in tree:
            try:
                with member.oneshot():
                    info, times = member.memory_full_info(), member.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            rss, pss = rss + info.rss, pss + info.pss
            cpu[member.pid] = times.user + times.system
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        time.sleep(SAMPLE_SECONDS)
    stdout, stderr = process.communicate()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        lines = stderr.decode(errors="replace").strip().splitlines()
        return Run(label, wall, 0.0, 0.0, 0.0, 0.0, 0, f"FAILED: {lines[-1] if lines else ''}")
    info = json.loads(stdout.decode().strip().splitlines()[-1])
    return Run(label, wall, info["compute_s"], sum(cpu.values()), peak_rss / MIB,
               peak_pss / MIB, info["objects"], info.get("note", ""))


# -- child processes -------------------------------------------------------------------------

def generate(kind: str, path: Path, size: int) -> None:
    """Disks (2D, uint8) or balls (3D, uint16) on a grid with noise: the pyramid and a .npy."""
    import numpy

    from tiler.segmentation.synthetic import draw_objects, grid_objects, write_array_pyramid

    started = time.perf_counter()
    if kind == "2d":
        shape, radius, options = (size, size), (4.0, 16.0), {"dtype": "uint8"}
    else:
        shape, radius = (size, size, size), (3.0, 10.0)
        options = {"dtype": "uint16", "background": 8000, "foreground": 30000, "noise": 4000}
    objects = grid_objects(shape, radius, gap=3, fill=0.85, seed=1)
    pixels = draw_objects(shape, objects, seed=2, **options)
    numpy.save(path.with_suffix(".npy"), pixels)
    write_array_pyramid(pixels[numpy.newaxis], path, pixel_size=(0.5,) * len(shape),
                        unit="micrometer", threads=os.cpu_count() or 1)
    print(f"generated {path.name}: {len(objects)} objects in "
          f"{time.perf_counter() - started:.0f} s")


def run_skimage(pixels: Path) -> dict:
    import numpy
    from skimage import filters, measure

    data = numpy.load(pixels)
    started = time.perf_counter()
    threshold = filters.threshold_otsu(data)
    labels = measure.label(data > threshold, connectivity=1)
    table = measure.regionprops_table(labels, data, properties=(
        "label", "area", "centroid", "bbox", "intensity_mean"))
    return {"compute_s": time.perf_counter() - started, "objects": int(len(table["label"])),
            "note": f"threshold {threshold:.1f}"}


def run_tilescope(image: Path, output: Path, budget_mib: int, processes: int | None) -> dict:
    from tiler.segmentation import segment_pyramid

    started = time.perf_counter()
    result = segment_pyramid(image, output, {"method": "threshold"},
                             memory_budget=budget_mib * MIB, processes=processes)
    summary = result.summary
    return {"compute_s": time.perf_counter() - started, "objects": result.object_count,
            "note": f"threshold {summary['threshold']:.1f}, {result.run['blocks']} blocks of "
                    f"{'x'.join(map(str, result.run['block_shape']))}, "
                    f"{result.run['processes']} processes"}


def _child() -> None:
    command = sys.argv[1]
    if command == "generate":
        generate(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("tool")
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--budget", type=int, default=1024)
    parser.add_argument("--processes", type=int, default=None)
    options = parser.parse_args(sys.argv[2:])
    if options.tool == "skimage":
        info = run_skimage(Path(options.input))
    else:
        info = run_tilescope(Path(options.input), Path(options.output), options.budget,
                             options.processes)
    print(json.dumps(info))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("generate", "run"):
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        _child()
    else:
        main()
