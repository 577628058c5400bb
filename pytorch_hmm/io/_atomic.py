"""Atomic file writing: a file is either its old self or completely the new one.

The data go to a temporary file in the target's folder, which is flushed, ``fsync``-ed and
then renamed over the target with :func:`os.replace` (atomic on POSIX and Windows); on any
error the temporary file is removed and the target is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import IO, Iterator, Optional, Union

__all__ = ["atomic_path", "atomic_write"]

PathLike = Union[str, "os.PathLike[str]"]

_UMASK = os.umask(0)
os.umask(_UMASK)


def _fsync_dir(folder: str) -> None:
    """Make the rename itself durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: PathLike, suffix: str = "") -> Iterator[str]:
    """Yield the name of a temporary file beside ``path``; whatever the body writes there
    replaces ``path`` atomically when the body ends without an error (the file is fsync-ed
    first). ``suffix`` keeps an extension that a writer may need."""
    target = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(target))
    if os.path.isdir(target):
        raise IsADirectoryError(f"{target} is a directory")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {target}: the folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(
        prefix="." + os.path.basename(target) + ".", suffix=suffix + ".tmp", dir=folder
    )
    os.close(fd)
    try:
        # mkstemp makes the file private (0600): give it the mode of the file it replaces,
        # or the one a plain open() would
        try:
            mode = os.stat(target).st_mode & 0o7777
        except OSError:
            mode = 0o666 & ~_UMASK
        os.chmod(tmp, mode)
        yield tmp
        with open(tmp, "rb+") as f:
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    _fsync_dir(folder)


@contextlib.contextmanager
def atomic_write(
    path: PathLike, mode: str = "w", encoding: Optional[str] = "utf-8"
) -> Iterator[IO]:
    """``open(path, mode)`` for writing (``"w"`` or ``"wb"``), atomically: see the module."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}")
    with atomic_path(path) as tmp:
        kw = {} if "b" in mode else {"encoding": encoding, "newline": None}
        with open(tmp, mode, **kw) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
