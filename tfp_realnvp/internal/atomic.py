"""Writes that never leave a half-written file or directory where a user looks.

Every file is written under a temporary name in its target's directory, flushed to
disk (``fsync``) and renamed over the target with ``os.replace``: a reader, or a
process killed at any moment, sees the old file or the new one, never a mixture.
Directories are built aside and renamed into place the same way; replacing an
existing directory renames the old one aside first and deletes it only once the new
one is in place, restoring it if that fails.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pathlib
import shutil
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

PathLike = str | os.PathLike


def _temporary_sibling(path: pathlib.Path, tag: str) -> pathlib.Path:
    """``.<name>.<tag>-<random><suffix>`` next to ``path``, keeping its suffix.

    The suffix is kept because some writers pick the format from it (Keras wants
    ``.keras``, Pillow ``.png``).
    """
    return path.with_name(f".{path.name}.{tag}-{uuid.uuid4().hex[:12]}{''.join(path.suffixes[-1:])}")


def fsync_directory(path: PathLike) -> None:
    """Flushes a directory entry (a rename or a new file in it) to disk, where supported."""
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: PathLike) -> None:
    """Flushes a file's contents to disk."""
    fd = os.open(os.fspath(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[pathlib.Path]:
    """Yields a temporary path to write; on success it becomes ``path`` atomically.

    For writers that take a file name (``model.save``, Pillow): they write the
    yielded path, which lies in the target's directory and ends in the target's
    suffix. When the block ends without an exception the file is flushed to disk
    and renamed over ``path``; otherwise it is removed and ``path`` is untouched.

    Example::

        with atomic_path("out/model.keras") as tmp:
            model.save(tmp)

    Args:
        path: the final file name. Its directory is created if needed.

    Raises:
        FileNotFoundError: when the writer did not create the temporary file.
    """
    target = pathlib.Path(os.fspath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_sibling(target, "tmp")
    try:
        yield temporary
        if not temporary.is_file():
            raise FileNotFoundError(f"nothing was written to {str(temporary)!r} for {str(target)!r}.")
        fsync_file(temporary)
        os.replace(temporary, target)
        fsync_directory(target.parent)
    finally:
        if temporary.exists():
            temporary.unlink()


def write_bytes(path: PathLike, data: bytes) -> pathlib.Path:
    """Writes ``data`` to ``path`` atomically (temporary file, fsync, rename)."""
    target = pathlib.Path(os.fspath(path))
    with atomic_path(target) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    return target


def write_text(path: PathLike, text: str) -> pathlib.Path:
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def finite_json(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, +-inf) replaced by ``None``.

    Dicts, lists and tuples are walked; NumPy scalars and arrays become Python
    numbers and lists. The result is valid JSON (``json.dumps(..., allow_nan=False)``
    accepts it), which bare ``NaN`` is not.
    """
    if isinstance(value, dict):
        return {str(k): finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return finite_json(value.tolist())
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return number if math.isfinite(number) else None


def write_json(path: PathLike, payload: Any) -> pathlib.Path:
    """Writes ``payload`` as indented, strictly valid JSON, atomically.

    Non-finite floats are written as ``null`` (see :func:`finite_json`).
    """
    text = json.dumps(finite_json(payload), indent=2, sort_keys=True, allow_nan=False) + "\n"
    return write_text(path, text)


# Directories ------------------------------------------------------------------------
@contextlib.contextmanager
def directory_lock(directory: PathLike, *, blocking: bool = True) -> Iterator[None]:
    """Holds an exclusive lock on ``directory`` (created if missing) for the block.

    Processes that lock the same directory run their blocks one at a time. The lock
    is ``flock`` on the directory itself, so nothing is left behind; it is released
    when the block ends or the process dies.

    Args:
        directory: the directory to lock.
        blocking: wait for another holder; otherwise raise ``BlockingIOError`` at once.
    """
    folder = pathlib.Path(os.fspath(directory))
    folder.mkdir(parents=True, exist_ok=True)
    import fcntl

    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            raise BlockingIOError(f"{str(folder)!r} is locked by another process.") from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def staging_directory(target: PathLike) -> pathlib.Path:
    """A fresh, not yet existing path next to ``target`` to build a directory in."""
    path = pathlib.Path(os.fspath(target))
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.parent / f".{path.name}.partial-{uuid.uuid4().hex[:12]}"


def _fsync_tree(root: pathlib.Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            fsync_file(os.path.join(folder, name))
        fsync_directory(folder)


def _is_empty_directory(path: pathlib.Path) -> bool:
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


def install_directory(staging: PathLike, target: PathLike, *, replace: bool = False) -> pathlib.Path:
    """Moves the finished directory ``staging`` to ``target`` in one rename.

    Without ``replace`` the target must not exist or be an empty directory; a
    target that another process filled in the meantime makes this fail, so two
    writers never overwrite each other. With ``replace`` an existing target is
    renamed aside, ``staging`` is renamed in, and only then is the old directory
    deleted; if the second rename fails, the old directory is put back. A left-over
    old directory that cannot be deleted is reported with a warning, not an error.

    Callers that may race with other processes hold :func:`directory_lock` on the
    target's parent around this call.

    Args:
        staging: the complete new directory, on the same file system as ``target``.
        target: where it goes.
        replace: replace an existing non-empty ``target``.

    Returns:
        ``target`` as a path.

    Raises:
        FileExistsError: naming ``target`` when it exists (not as an empty
            directory) and ``replace`` is false, or when it is not a directory.
        OSError: when a rename fails; the old ``target`` is then unchanged.
    """
    staging, target = pathlib.Path(os.fspath(staging)), pathlib.Path(os.fspath(target))
    _fsync_tree(staging)
    if target.exists() or target.is_symlink():
        if not target.is_dir() or target.is_symlink():
            raise FileExistsError(f"{str(target)!r} exists and is not a directory.")
        if _is_empty_directory(target):
            target.rmdir()
        elif not replace:
            raise FileExistsError(f"{str(target)!r} already exists and is not empty.")
        else:
            _replace_directory(staging, target)
            return target
    try:
        os.rename(staging, target)
    except OSError as error:
        if target.exists():
            raise FileExistsError(f"{str(target)!r} already exists and is not empty.") from error
        raise
    fsync_directory(target.parent)
    return target


def _replace_directory(staging: pathlib.Path, target: pathlib.Path) -> None:
    """Old aside, new in, old deleted; the old one comes back if the new cannot go in."""
    aside = target.parent / f".{target.name}.replaced-{uuid.uuid4().hex[:12]}"
    os.rename(target, aside)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(aside, target)
        raise
    fsync_directory(target.parent)
    try:
        shutil.rmtree(aside)
    except OSError as error:
        warnings.warn(
            f"replaced {str(target)!r}, but could not delete its old contents, kept at "
            f"{str(aside)!r} ({error}); delete that directory by hand.",
            RuntimeWarning,
            stacklevel=3,
        )


def remove_tree(path: PathLike) -> None:
    """Deletes a directory without ever leaving it half deleted under its own name.

    The directory is renamed to a hidden sibling first, then deleted.
    """
    folder = pathlib.Path(os.fspath(path))
    if not folder.exists():
        return
    aside = folder.parent / f".{folder.name}.deleted-{uuid.uuid4().hex[:12]}"
    os.rename(folder, aside)
    shutil.rmtree(aside, ignore_errors=True)
