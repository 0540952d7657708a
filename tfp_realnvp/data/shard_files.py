"""Shard files on disk: finding the ones a source names, and writing a complete set.

Both kinds of shard (TFRecord and ``.npz``) are named ``{prefix}-00000-of-0000n{suffix}``
and written the same way: aside, in a hidden staging folder, then renamed into place
once all are complete, so a reader never sees a partial set. Needs no TensorFlow.

Shared by the shard modules and :mod:`tfp_realnvp.data.streaming`, not re-exported by
:mod:`tfp_realnvp.data`: :data:`TFRECORD_SUFFIX`, :data:`NPZ_SUFFIX`,
:func:`is_glob_pattern`, :func:`shard_files` and :func:`write_shards`.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tfp_realnvp.data.checks import PathLike
from tfp_realnvp.internal.arguments import check_int

__all__: list[str] = []

TFRECORD_SUFFIX = ".tfrecord"
"""The suffix of TFRecord shard files."""

NPZ_SUFFIX = ".npz"
"""The suffix of ``.npz`` shard files."""

_GLOB_CHARACTERS = frozenset("*?[")


def is_glob_pattern(text: str) -> bool:
    """Whether ``text`` holds a glob wildcard (``*``, ``?`` or ``[``)."""
    return bool(_GLOB_CHARACTERS & set(text))


def _files_in_folder(folder: Path, suffix: str, prefix: str | None) -> list[str]:
    pattern = f"{glob.escape(prefix)}-*{suffix}" if prefix else f"*{suffix}"
    files = sorted(str(p) for p in folder.glob(pattern) if p.is_file())
    if not files:
        raise ValueError(f"no {pattern} files in {str(folder)!r}.")
    return files


def _listed_files(source: Any) -> list[str]:
    try:
        files = [os.fspath(f) for f in source]
    except TypeError:
        raise ValueError(
            f"shards must be a folder, a glob pattern, a file or a list of files; received {type(source).__name__}."
        ) from None
    if not files:
        raise ValueError("the list of shard files is empty.")
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise FileNotFoundError(f"shard file not found: {missing[0]!r}.")
    return files


def shard_files(source: Any, suffix: str, *, prefix: str | None = None) -> list[str]:
    """The shard files that ``source`` names, sorted unless listed.

    Args:
        source: a folder (its ``*{suffix}`` files, or ``{prefix}-*{suffix}``), a glob
            pattern, a file, or a list of files.
        suffix: the shard files' suffix.
        prefix: in a folder, read only the files of this prefix.

    Raises:
        FileNotFoundError: naming a missing file or folder.
        ValueError: naming the source when it names no file.
    """
    if not isinstance(source, (str, os.PathLike)):
        return _listed_files(source)
    text = os.fspath(source)
    path = Path(text)
    if path.is_dir():
        return _files_in_folder(path, suffix, prefix)
    if path.is_file():
        return [text]
    if is_glob_pattern(text):
        files = sorted(glob.glob(text))
        if not files:
            raise ValueError(f"no files match the pattern {text!r}.")
        return files
    raise FileNotFoundError(f"no such shard file or folder: {text!r}.")


def _existing_shards(directory: Path, prefix: str, suffix: str) -> list[Path]:
    return sorted(directory.glob(f"{glob.escape(prefix)}-?????-of-?????{suffix}"))


def _check_prefix(prefix: Any) -> str:
    if not isinstance(prefix, str) or not prefix or os.sep in prefix or "/" in prefix:
        raise ValueError(f"prefix must be a non-empty file name prefix; received {prefix!r}.")
    return prefix


def _stage(
    records: Iterable[Any],
    staging: Path,
    *,
    prefix: str,
    suffix: str,
    per_shard: int,
    verbose: bool,
    write: Callable[[Path, list], None],
) -> list[Path]:
    """Writes ``records`` into ``staging``, ``per_shard`` at a time; returns the files."""
    staged: list[Path] = []
    total = 0

    def flush(chunk: list) -> None:
        nonlocal total
        path = staging / f"{len(staged):05d}{suffix}"
        write(path, chunk)
        staged.append(path)
        total += len(chunk)
        if verbose:
            print(f"{prefix}: shard {len(staged)} written ({total} images so far)", file=sys.stderr, flush=True)

    chunk: list = []
    for record in records:
        chunk.append(record)
        if len(chunk) == per_shard:
            flush(chunk)
            chunk = []
    if chunk:
        flush(chunk)
    if not staged:
        raise ValueError("there are no images to write; received an empty input.")
    return staged


def _publish(staged: list[Path], directory: Path, *, prefix: str, suffix: str, replaced: list[Path]) -> list[Path]:
    """Renames the staged files into place and removes the ``replaced`` ones left over."""
    count = len(staged)
    final = [directory / f"{prefix}-{k:05d}-of-{count:05d}{suffix}" for k in range(count)]
    for source, target in zip(staged, final):
        os.replace(source, target)
    for old in replaced:
        if old not in final:
            old.unlink()
    return final


def write_shards(
    records: Iterable[Any],
    directory: PathLike,
    *,
    prefix: str,
    suffix: str,
    images_per_shard: int,
    overwrite: bool,
    verbose: bool,
    write: Callable[[Path, list], None],
) -> list[Path]:
    """Writes ``records`` in shards of ``images_per_shard``, aside, then renames them.

    Shards are written into a hidden staging folder inside ``directory`` and renamed to
    ``{prefix}-{k:05d}-of-{n:05d}{suffix}`` once all are written, so a reader never
    sees a partial set. Existing shards of the same prefix are refused unless
    ``overwrite``; then the ones not replaced are removed.

    Args:
        records: what to write, one per image.
        directory: where the shards go (created if missing).
        prefix: the shards' name prefix.
        suffix: the shards' suffix.
        images_per_shard: records per shard (the last one may hold fewer).
        overwrite: replace existing shards of the same prefix.
        verbose: print a line per shard written.
        write: ``write(path, records)`` writes one shard file.

    Returns:
        The shard paths, in order.

    Raises:
        FileExistsError: if shards of ``prefix`` exist and ``overwrite`` is false.
        ValueError: naming the received value for a bad prefix or count, or an empty input.
    """
    prefix = _check_prefix(prefix)
    per_shard = check_int(images_per_shard, name="images_per_shard")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    existing = _existing_shards(directory, prefix, suffix)
    if existing and not overwrite:
        raise FileExistsError(
            f"{str(directory)!r} already holds {len(existing)} {prefix}-*{suffix} shard(s) "
            f"such as {existing[0].name!r}; pass overwrite=True to replace them."
        )
    staging = Path(tempfile.mkdtemp(prefix=f".{prefix}-partial-", dir=directory))
    try:
        staged = _stage(
            records, staging, prefix=prefix, suffix=suffix, per_shard=per_shard, verbose=verbose, write=write
        )
        return _publish(staged, directory, prefix=prefix, suffix=suffix, replaced=existing)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
