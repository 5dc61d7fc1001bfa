"""Files: atomic output (every file hepsafe writes appears whole or not at all), checked
input (a missing or unreadable file raises the caller's error, naming the file), checksums."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    The temporary file lives in the same directory, so the final ``os.replace`` is atomic.
    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; give the usual mode
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON to ``path`` atomically; return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically; return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def read_json(
    path: str | os.PathLike[str],
    error: type[Exception],
    where: str | None = None,
    missing: str = "no such file",
) -> Any:
    """The parsed JSON file ``path``; raise ``error`` naming it (``where``, default the path)
    when it does not exist (``"{where}: {missing}"``) or is not valid JSON."""
    p = Path(path)
    where = str(path) if where is None else where
    if not p.exists():
        raise error(f"{where}: {missing}")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise error(f"{where}: not valid JSON ({exc})") from exc


def open_root(path: str | os.PathLike[str], error: type[Exception]) -> Any:
    """The ROOT file ``path`` opened with uproot (the caller closes it); raise ``error``
    naming the file when it does not exist or cannot be read."""
    import uproot

    p = Path(path)
    if not p.exists():
        raise error(f"{path}: no such file")
    try:
        return uproot.open(p)
    except Exception as exc:  # uproot raises many kinds on a corrupt file
        raise error(f"{path}: not a readable ROOT file ({exc})") from exc


def sha256sum(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
