"""Run one pyramid tool on one input, in this process: `python _tools.py TOOL INPUT OUTPUT`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

#: ome-zarr-py's 3D layout in the comparison: the chunks and shards Tilescope's 3D writer uses.
OME_ZARR_CHUNKS, OME_ZARR_SHARDS = (64, 64, 64), (512, 512, 512)
#: Tilescope's 3D Blosc block size (tiler.volume_pyramid.BLOSC_BLOCK_BYTES), for --same-codec.
TILESCOPE_3D_BLOCKSIZE = 1 << 19
#: Modules that may hold Tilescope's 3D writer ``write_volume_pyramid``, first found wins.
VOLUME_WRITER_MODULES = ("tiler.volume_pyramid", "tiler.volume")


def volume_writer():
    """Tilescope's write_volume_pyramid, or None when no module provides it yet."""
    import importlib

    for name in VOLUME_WRITER_MODULES:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def tilescope_2d(source: Path, output: Path) -> dict:
    from tiler.pyramid import write_pyramid
    from tiler.readers import open_image

    with open_image(source) as image:
        summary = write_pyramid(image, output)
    return {"output": str(output), "note": f"{len(summary.levels)} levels"}


def vips_dzsave(source: Path, output: Path) -> dict:
    import pyvips

    image = pyvips.Image.new_from_file(str(source), access="sequential")
    image.dzsave(str(output), tile_size=256, overlap=0, suffix=".jpg")
    return {"output": str(output) + ".dzi", "note": "JPEG Q75 256 px tiles"}


def vips_tiffsave(source: Path, output: Path) -> dict:
    import pyvips

    image = pyvips.Image.new_from_file(str(source), access="sequential")
    image.tiffsave(str(output), tile=True, pyramid=True, compression="deflate",
                   tile_width=256, tile_height=256, bigtiff=True)
    return {"output": str(output), "note": "deflate, tiled 256, pyramid"}


def tilescope_3d(source: Path, output: Path) -> dict:
    from tiler.readers import open_image

    module = volume_writer()
    with open_image(source) as volume:
        summary = module.write_volume_pyramid(volume, output)
    return {"output": str(output), "note": f"{len(summary.levels)} levels, {_codec(output)}"}


def _codec(output: Path) -> str:
    """The Blosc settings level 0 of a written pyramid declares, e.g. "zstd-1, 512 KiB blocks"."""
    import zarr

    config = zarr.open_array(str(output / "0"), mode="r").metadata.codecs[0].codecs[1]
    blocks = f", {config.blocksize >> 10} KiB blocks" if config.blocksize else ""
    return f"{config.cname.value}-{config.clevel}{blocks}"


def ome_zarr_py(source: Path, output: Path, *, same_codec: bool = False) -> dict:
    """ome-zarr-py write_image on a dask array of the slices: the same levels (2x mean in z, y
    and x down to <= 64 px), chunks and shards as Tilescope's 3D writer.  Its codec is Blosc
    zstd-5 bit-shuffle with blosc's default blocks (ome-zarr-py's usual zstd setting); with
    ``same_codec``, Tilescope's own (zstd-1 bit-shuffle in 512 KiB blocks) instead."""
    import dask
    import dask.array
    import tifffile
    import zarr
    import zarr.codecs
    from ome_zarr.scale import Methods
    from ome_zarr.writer import write_image

    slices = sorted(source.glob("*.tif"))
    first = tifffile.imread(slices[0])
    planes = [dask.array.from_delayed(dask.delayed(tifffile.imread)(path), first.shape,
                                      first.dtype) for path in slices]
    volume = dask.array.stack(planes)
    shards = tuple(min(s, n) for s, n in zip(OME_ZARR_SHARDS, volume.shape, strict=True))
    levels, side = 1, max(volume.shape)
    while side > OME_ZARR_CHUNKS[0]:
        side, levels = -(-side // 2), levels + 1
    factors = [{"z": 2**n, "y": 2**n, "x": 2**n} for n in range(1, levels)]
    group = zarr.open_group(str(output), mode="w-", zarr_format=3)
    clevel, blocksize = (1, TILESCOPE_3D_BLOCKSIZE) if same_codec else (5, 0)
    codec = zarr.codecs.BloscCodec(cname="zstd", clevel=clevel, shuffle="bitshuffle",
                                   blocksize=blocksize)
    write_image(volume.rechunk(shards), group, scale_factors=factors, method=Methods.LOCAL_MEAN,
                axes="zyx", storage_options={"chunks": OME_ZARR_CHUNKS, "shards": shards,
                                             "compressors": codec})
    blocks = f", {blocksize >> 10} KiB blocks" if blocksize else ""
    return {"output": str(output),
            "note": f"dask local_mean, {levels} levels, zstd-{clevel}{blocks}"}


def ome_zarr_py_same_codec(source: Path, output: Path) -> dict:
    return ome_zarr_py(source, output, same_codec=True)


TOOLS = {"tilescope": tilescope_2d, "vips-dzsave": vips_dzsave, "vips-tiffsave": vips_tiffsave,
         "tilescope-3d": tilescope_3d, "ome-zarr-py": ome_zarr_py,
         "ome-zarr-py-same-codec": ome_zarr_py_same_codec}


def main() -> None:
    tool, source, output = sys.argv[1:4]
    result = TOOLS[tool](Path(source), Path(output))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
