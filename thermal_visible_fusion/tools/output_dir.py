"""
Outputs that never destroy or mix data: written beside, renamed into place when done.

Every offline tool writes its output folder through :func:`staged_output`:

* an existing non-empty output is refused unless ``force``, and ``force`` replaces it
  whole (no stale frames of an earlier, longer run stay mixed in);
* an input is never inside what ``force`` would remove;
* the output is written into a temporary sibling (``.NAME.partial-PID/NAME``) and renamed
  into place only when complete, so a failure leaves no partial output behind.
"""

from __future__ import annotations

from contextlib import contextmanager
import os
from pathlib import Path
import shutil
from typing import Iterable, Iterator


def check_output(out: Path, force: bool, inputs: Iterable[str | Path] = ()) -> None:
    """Raise ``FileExistsError`` or ``ValueError`` when writing ``out`` would lose data."""
    target = out.resolve()
    for given in inputs:
        path = Path(given).resolve()
        if path == target or target in path.parents:
            raise ValueError(f"input {given} lies inside the output {out}, which would be "
                             "replaced; choose another output")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        if not force:
            raise FileExistsError(f"{out} exists and is not a folder; use --force to replace it")
    elif out.exists() and any(out.iterdir()) and not force:
        raise FileExistsError(f"{out} exists and is not empty; use --force to replace it")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextmanager
def staged_output(out: str | Path, force: bool = False, inputs: Iterable[str | Path] = (),
                  create: bool = True) -> Iterator[Path]:
    """
    Check ``out``, then yield an empty temporary folder beside it.

    Check ``out`` (see :func:`check_output`), then yield an empty temporary folder
    beside it (``create=False``: its path only, for writers that create it, such as a
    bag's); on success it replaces ``out`` whole, on any error it is removed.
    """
    out = Path(out)
    check_output(out, force, inputs)
    out.parent.mkdir(parents=True, exist_ok=True)
    # OUT's own name inside a hidden sibling: a bag writer names its files after it
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    _remove(staging)
    staging.mkdir()
    partial = staging / out.name
    if create:
        partial.mkdir()
    try:
        yield partial
        if not partial.exists():
            raise FileNotFoundError(f"nothing was written for {out}")
        if out.exists() or out.is_symlink():  # --force: the old output goes only now
            os.replace(out, staging / f"{out.name}.old")
        os.replace(partial, out)
    finally:
        _remove(staging)
