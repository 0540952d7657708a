"""Where an export goes: version directories, ``version="auto"``, overwrite rules, installing.

TF Serving reads a model from a base directory whose integer-named subdirectories are
its versions. An export goes into a directory of its own (``version=None``), into
``base/<version>``, or with ``version="auto"`` into the largest existing version plus one.

A directory that holds files is replaced only with ``overwrite=True``, and then the old
export stays until the new one is in place. Exports that could collide take turns on a
lock of their base directory, and the target is resolved again under it: two ``"auto"``
exports get a version each, and of two exports to one version the second fails.
"""

from __future__ import annotations

import os
import pathlib

from tfp_realnvp.internal import atomic
from tfp_realnvp.internal.arguments import is_integer

#: The ``version`` that picks the largest existing version plus one (1 when there is none).
AUTO_VERSION = "auto"


class ExportExistsError(FileExistsError, ValueError):
    """The export directory already holds files and ``overwrite`` was not given.

    A ``FileExistsError`` that is also a ``ValueError``, so callers may catch either.
    """


def parse_version(version: int | str) -> int | str:
    """``version`` as an ``int``, or :data:`AUTO_VERSION`.

    Args:
        version: a non-negative integer (a TF Serving model version), its decimal text, or ``"auto"``.

    Raises:
        ValueError: naming ``version`` when it is none of these.
    """
    if isinstance(version, str) and version == AUTO_VERSION:
        return version
    if isinstance(version, str) and version.isdigit():
        return int(version)
    if is_integer(version) and int(version) >= 0:
        return int(version)
    raise ValueError(
        f"version must be '{AUTO_VERSION}' or an integer >= 0 (a TF Serving model version); received {version!r}."
    )


def existing_versions(base: pathlib.Path) -> list[int]:
    """The integer-named subdirectories of ``base`` (TF Serving model versions), ascending."""
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())


def resolve_target(path: str | os.PathLike, version: int | str | None) -> pathlib.Path:
    """The directory to write: ``path``, ``path/<version>`` or ``path/<next version>``.

    Raises:
        ValueError: for a ``version`` that is not ``None``, ``"auto"`` or an integer >= 0.
    """
    base = pathlib.Path(os.fspath(path)).expanduser()
    if version is None:
        return base
    version = parse_version(version)
    if version == AUTO_VERSION:
        versions = existing_versions(base)
        return base / str(versions[-1] + 1 if versions else 1)
    return base / str(version)


def check_writable(target: pathlib.Path, overwrite: bool) -> None:
    """Refuses a ``target`` that is not a directory, or one that holds files unless ``overwrite``.

    Raises:
        ExportExistsError: naming ``target``.
    """
    if (target.exists() or target.is_symlink()) and (not target.is_dir() or target.is_symlink()):
        raise ExportExistsError(f"cannot export to {str(target)!r}: it exists and is not a directory.")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise ExportExistsError(
            f"export directory {str(target)!r} already exists and is not empty; pass "
            "overwrite=True to replace it, or export under a new version."
        )


def _lock_directory(path: str | os.PathLike, version: int | str | None) -> pathlib.Path:
    """The directory whose lock serialises exports that could collide: the base of the
    versions, or the parent of an unversioned export directory."""
    base = pathlib.Path(os.fspath(path)).expanduser()
    return base if version is not None else base.parent


def install_export(
    staging: pathlib.Path, path: str | os.PathLike, version: int | str | None, overwrite: bool
) -> pathlib.Path:
    """Moves the finished export ``staging`` into place while holding the lock of its base directory.

    The target is resolved again under the lock, so ``version="auto"`` picks a
    version no other export has taken, and an explicit target that another process
    filled in the meantime is refused unless ``overwrite``.

    Returns:
        The directory the export now lives in.

    Raises:
        ExportExistsError: when the target is taken and ``overwrite`` is false.
        OSError: when the move fails; what was there before is unchanged.
    """
    with atomic.directory_lock(_lock_directory(path, version)):
        target = resolve_target(path, version)
        check_writable(target, overwrite)
        try:
            return atomic.install_directory(staging, target, replace=overwrite)
        except FileExistsError as error:
            raise ExportExistsError(
                f"cannot export to {str(target)!r}: {error} Pass overwrite=True to replace it, "
                "or export under a new version."
            ) from None
        except OSError as error:
            raise OSError(
                f"could not move the export into {str(target)!r} ({error}); what was there before is unchanged."
            ) from error
