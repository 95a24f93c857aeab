"""Output-path checks shared by every command that writes files after long work.

A command that calibrates for a minute and then finds its output folder unwritable has wasted
the user's minute; each checks its outputs first with `output_problem`, and raises its own
stage's error with the returned reason.
"""
from __future__ import annotations

import os
from pathlib import Path


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
