"""Writing outputs safely: the up-front check of where a long command will write, and the one
atomic write every stage uses.

A command that calibrates for a minute and then finds its output folder unwritable has wasted
the user's minute; each checks its outputs first with `output_problem`, and raises its own
stage's error with the returned reason. Each file is then written under a temporary name beside
it and renamed (`atomic_write`), so an interrupted or failed write never leaves a half-written
file under the final name, nor a stale temporary file.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def output_problem(path: str | os.PathLike, folder: bool = False) -> str | None:
    """Why `path` cannot be written (a file, or with `folder` a folder that may be created), or None.

    Files need an existing parent folder; folders are created with their missing parents, so only
    the nearest existing ancestor must be a writable folder.
    """
    path = Path(path)
    if folder:
        if path.exists() and not path.is_dir():
            return f"{path} exists and is not a directory"
        base = _nearest_existing(path)
        if not base.is_dir():
            return f"cannot create {path}: {base} is not a directory"
    else:
        if path.is_dir():
            return f"cannot write {path}: it is a directory; give a file name"
        base = path.parent
        if not base.exists():
            return f"cannot write {path}: directory {base} does not exist"
        if not base.is_dir():
            return f"cannot write {path}: {base} is not a directory"
    if not os.access(base, os.W_OK | os.X_OK):
        return f"cannot write {path}: no write permission in {base}"
    return None


def partial_name(path: str | os.PathLike, hidden: bool = False) -> Path:
    """The temporary name `path` is written under before its rename: `NAME.partial` beside it, or
    with `hidden` `.STEM.partial.SUFFIX`, which keeps the suffix for writers that pick the format
    from it (OpenCV, matplotlib) and stays out of a plain listing of a folder users look at."""
    path = Path(path)
    return path.with_name(f".{path.stem}.partial{path.suffix}" if hidden else f"{path.name}.partial")


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object], hidden: bool = False) -> Path:
    """Call `write(tmp)` with the temporary `partial_name` in the same folder (so the rename cannot
    cross filesystems), then rename it to `path`; the temporary file is removed whether `write`
    succeeds or raises. Returns `path`."""
    path = Path(path)
    tmp = partial_name(path, hidden)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomic(path: str | os.PathLike, text: str, hidden: bool = False) -> Path:
    """`Path.write_text` through `atomic_write`."""
    return atomic_write(path, lambda tmp: tmp.write_text(text), hidden)


def write_bytes_atomic(path: str | os.PathLike, data, hidden: bool = False) -> Path:
    """`Path.write_bytes` through `atomic_write`; `data` is anything with the buffer protocol
    (bytes, a TensorRT IHostMemory)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), hidden)
