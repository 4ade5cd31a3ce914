"""dask.distributed vs the local path: one 2D conversion and one threshold segmentation, wall time."""

# .venv/bin/python benchmarks/cluster.py /tmp/tilescope-bench-cluster 8192
#
# Runs local (threads=2 / processes=2), then a 2-process LocalCluster (first run pays the workers' imports), then
# both again. On one 2-core machine the cluster cannot win: it shows the per-task overhead, not a speed-up;
# a real cluster adds cores and memory beyond one host.
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

def main():
    from distributed import LocalCluster
    from tiler.synthetic import write_synthetic_tiff
    from tiler.readers import open_image
    from tiler.pyramid import write_pyramid
    from tiler.segmentation import segment_pyramid
    from tiler.segmentation.synthetic import draw_objects, grid_objects, write_array_pyramid
    root = Path(sys.argv[1]); shutil.rmtree(root, ignore_errors=True); root.mkdir(parents=True)
    side = int(sys.argv[2]) if len(sys.argv) > 2 else 8192
    image = root / "image.tif"
    write_synthetic_tiff(image, (side, side), dtype="uint16", tile=256)
    shape = (4096, 4096)
    pixels = draw_objects(shape, grid_objects(shape, (4.0, 12.0), gap=2, fill=0.8, seed=1), seed=2)
    seg_in = write_array_pyramid(pixels, root / "seg.ome.zarr", tile_size=256, threads=2)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        for label, scheduler in [("local", None), ("cluster (cold)", address), ("local", None), ("cluster", address)]:
            t = time.perf_counter()
            with open_image(image) as source:
                write_pyramid(source, root / f"p-{time.time_ns()}", threads=2, scheduler=scheduler)
            convert = time.perf_counter() - t
            dest = root / f"s-{time.time_ns()}"; dest.mkdir()
            t = time.perf_counter()
            result = segment_pyramid(seg_in, dest, {"method": "threshold"}, processes=2, scheduler=scheduler)
            seg = time.perf_counter() - t
            print(f"{label:15s} 2D conversion {side}x{side} uint16: {convert:6.2f} s   "
                  f"threshold segmentation 4096x4096 ({result.run['blocks']} blocks, {result.object_count} objects): {seg:6.2f} s", flush=True)

if __name__ == "__main__":
    main()
