"""Atomic publishing of a pyramid directory: build under a hidden temporary name beside it, then rename."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def refuse_existing(dest: Path) -> None:
    if dest.exists():
        raise FileExistsError(f"pyramid destination already exists: {dest}")


@contextmanager
def publishing(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary sibling of `dest`; rename it to `dest` when the block succeeds.

    A reader never sees a half-written pyramid: on any error (or interruption) the temporary
    directory is removed and `dest` is untouched. FileExistsError if `dest` exists before or after.
    """
    dest = Path(dest)
    refuse_existing(dest)
    temp = dest.parent / f".{dest.name}.partial-{secrets.token_hex(6)}"
    try:
        yield temp
        refuse_existing(dest)
        os.rename(temp, dest)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
