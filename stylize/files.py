"""Atomic writes (a file appears under its name only once it is complete), and the folders the
package ships."""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

TMP_SUFFIX = ".stylize-tmp"  # temporary files are named .NAME.PID.RANDOM.stylize-tmp


def _umask() -> int:
    mask = os.umask(0)  # reading it means setting it: done once, at import, before any threads
    os.umask(mask)
    return mask


UMASK = _umask()


def temp_beside(path: Path, prefix: str, suffix: str) -> tuple[int, str]:
    """A new temporary file in `path`'s folder (fd, name), with the permissions a plain open()
    would give (0o666 less the umask): mkstemp's own 0o600 would keep the finished file from
    the other users and the web server that a user's pictures are made for."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    os.chmod(tmp, 0o666 & ~UMASK)  # os.fchmod is not on Windows before Python 3.13
    return fd, tmp


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[BinaryIO]:
    """Open a temporary file beside `path` for writing; rename it to `path` when the block
    ends. On any error, Ctrl-C or SIGTERM included, it is removed, so a reader never sees
    half a file. (After SIGKILL it stays behind, hidden: see remove_stale_temps.)"""
    path = Path(path)
    fd, tmp = temp_beside(path, f".{path.name}.{os.getpid()}.", TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the name points at it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temporary files atomic_write left in `folder` when its process was killed
    (SIGKILL, power loss): those whose writer's process id is no longer running."""
    removed = []
    for tmp in Path(folder).glob(f".*{TMP_SUFFIX}"):
        pid = tmp.name.removesuffix(TMP_SUFFIX).split(".")[-2]
        if pid.isdigit() and not _running(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def shipped(folder: str, packaged: str) -> Path:
    """A folder the repository keeps at its top (weights/, examples/): stylize/`packaged` in an
    installed wheel (the build maps the folder there: pyproject.toml), else `folder` beside the
    package (a checkout, or an editable install)."""
    inside = importlib.resources.files("stylize") / packaged
    return Path(str(inside)) if inside.is_dir() else Path(__file__).resolve().parent.parent / folder
