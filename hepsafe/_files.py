"""Files: atomic output (every file hepsafe writes appears whole or not at all), output
directories hepsafe owns (marker, lock, replacement rules), checked input (a missing or
unreadable file raises the caller's error, naming the file), checksums."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from hepsafe.exceptions import OutputError, OutputExistsError, OutputLockedError

log = logging.getLogger("hepsafe._files")


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


# --------------------------------------------------------------------------- output directories
#: the file that marks a directory as written by hepsafe: JSON with the writer, the hepsafe
#: version, the creation time and the names of the files written
OUTPUT_MARKER = ".hepsafe-output"
MARKER_FORMAT = "hepsafe-output/1"
_TMP_TAG, _OLD_TAG = "hepsafe-tmp-", "hepsafe-old-"
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def lock_path(target: str | os.PathLike[str]) -> Path:
    """The lock file of output directory ``target``: ``.<name>.lock`` beside it."""
    t = Path(os.path.abspath(target))
    return t.parent / f".{t.name}.lock"


def read_marker(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The marker of ``directory`` (a dict with ``files``), or None when it has none or it is
    not a hepsafe marker."""
    try:
        marker = json.loads((Path(directory) / OUTPUT_MARKER).read_text())
    except (OSError, ValueError):
        return None
    ok = (isinstance(marker, dict) and marker.get("format") == MARKER_FORMAT
          and isinstance(marker.get("files"), list))
    return marker if ok else None


def _check_place(target: Path, inputs: Iterable[str | os.PathLike[str]]) -> None:
    """Refuse a target that is or contains an input or the working directory; create its
    parent; check that the parent is a writable directory."""
    real = target.resolve()
    for item in inputs:
        p = Path(item).resolve()
        if real == p or real in p.parents:
            how = "is" if real == p else "contains"
            raise OutputError(f"{target}: refused as output directory: it {how} the input "
                              f"{p}; choose a directory that holds no input")
    cwd = Path.cwd().resolve()
    if real == cwd or real in cwd.parents:
        how = "is" if real == cwd else "contains"
        raise OutputError(f"{target}: refused as output directory: it {how} the working "
                          "directory; choose a new directory (e.g. -o out)")
    ancestor = target.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"{target}: cannot create the output directory: {ancestor} is "
                          "not a directory")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{target}: cannot create its parent directory {target.parent} "
                          f"({exc.strerror})") from exc
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise OutputError(f"{target}: the parent directory {target.parent} is not writable")


def _check_existing(target: Path, force: bool) -> None:
    """Refuse an existing ``target`` unless ``force`` and it is a directory hepsafe wrote:
    it carries the marker and holds only the regular files the marker lists."""
    if not (target.exists() or target.is_symlink()):
        return
    if target.is_symlink() or not target.is_dir():
        kind = "a symbolic link" if target.is_symlink() else "not a directory"
        raise OutputError(f"{target} exists and is {kind}; choose a new output directory")
    if not force:
        raise OutputExistsError(f"{target} exists; pass --force to replace it (only a "
                                "directory written by hepsafe is replaced)")
    marker = read_marker(target)
    if marker is None:
        raise OutputError(f"{target}: --force refused: it has no valid {OUTPUT_MARKER} "
                          "marker, so hepsafe did not write it; remove it yourself or choose "
                          "another output directory")
    known = {str(f) for f in marker["files"]} | {OUTPUT_MARKER}
    for entry in sorted(os.scandir(target), key=lambda e: e.name):
        if entry.name not in known or not entry.is_file(follow_symlinks=False):
            raise OutputError(f"{target}: --force refused: '{entry.name}' inside was not "
                              f"written by hepsafe (not listed in {OUTPUT_MARKER}); move it out "
                              "or choose another output directory")


def check_output_dir(
    target: str | os.PathLike[str], force: bool = False,
    inputs: Iterable[str | os.PathLike[str]] = (),
) -> Path:
    """Raise OutputError (one line naming ``target``) when ``target`` may not be written or
    replaced; return it as an absolute path. Creates missing parent directories.

    Refused: a target that is or contains one of ``inputs`` or the working directory, one
    whose parent is not a writable directory, an existing one without ``force``, and with
    ``force`` one without the marker or holding anything the marker does not list.
    """
    t = Path(os.path.abspath(os.path.expanduser(target)))
    if t == t.parent:
        raise OutputError(f"{target}: refused as output directory (a file-system root)")
    inputs = list(inputs)
    _check_place(t, inputs)
    _check_existing(t, force)
    return t


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"


@contextlib.contextmanager
def output_lock(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the lock of output directory ``target`` for the block (``fcntl.flock`` on
    ``.<name>.lock`` beside it, holding the pid); removed at the end.

    Raises OutputLockedError, naming the directory and the holder's pid, when another process
    holds it. A lock file left by a killed process is not locked and is taken over.
    """
    t = Path(os.path.abspath(target))
    path = lock_path(t)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(f"{t}: cannot write its lock file {path} "
                              f"({exc.strerror})") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise OutputError(f"{t}: cannot lock {path} ({exc.strerror})") from exc
            raise OutputLockedError(
                f"{t} is being written by another hepsafe process (pid {_holder(path)}, lock "
                f"{path}); wait for it to finish or choose another output directory") from None
        try:  # the file locked must still be the one at the path (a finishing holder unlinks)
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    previous = _holder(path)
    if previous not in ("unknown", str(os.getpid())):
        log.info("took over the lock of %s left by pid %s (no longer running)", t, previous)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def clean_stray(target: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary directories that killed hepsafe runs left beside ``target``
    (``.<name>.hepsafe-tmp-*`` and ``.<name>.hepsafe-old-*``); return them. Call it with the
    lock held."""
    t = Path(os.path.abspath(target))
    pattern = re.compile(rf"\.{re.escape(t.name)}\.hepsafe-(?:tmp|old)-[a-z0-9_]{{8}}")
    removed = []
    for entry in os.scandir(t.parent):
        if pattern.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
            log.info("removed %s, left by an interrupted run", entry.path)
    return removed


def _exchange(a: Path, b: Path) -> bool:
    """Swap the directories ``a`` and ``b`` in one step (Linux ``renameat2``
    ``RENAME_EXCHANGE``); False where the system or file system cannot."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


def write_marker(directory: str | os.PathLike[str], writer: str) -> Path:
    """Write the marker of ``directory``, listing the files in it now; return its path."""
    from hepsafe import __version__

    d = Path(directory)
    files = sorted(e.name for e in os.scandir(d) if e.name != OUTPUT_MARKER)
    return write_json(d / OUTPUT_MARKER, {
        "format": MARKER_FORMAT, "writer": writer, "hepsafe": __version__, "pid": os.getpid(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "files": files,
    })


@contextlib.contextmanager
def output_directory(
    target: str | os.PathLike[str], force: bool = False,
    inputs: Iterable[str | os.PathLike[str]] = (), writer: str = "hepsafe",
) -> Iterator[Path]:
    """A temporary directory beside ``target`` that replaces it when the block succeeds.

    Checked first (:func:`check_output_dir`), then locked (:func:`output_lock`); temporary
    directories of killed runs are removed. On success the marker is written (``writer``
    and the files) and the directory is swapped onto ``target`` in one step, the old one
    removed. On any exception, or when killed, ``target`` is left as it was.
    """
    t = check_output_dir(target, force, inputs)
    with output_lock(t):
        _check_existing(t, force)  # again: another process may have written it meanwhile
        clean_stray(t)
        tmp = Path(tempfile.mkdtemp(prefix=f".{t.name}.{_TMP_TAG}", dir=t.parent))
        try:
            yield tmp
            write_marker(tmp, writer)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o777 & ~umask)
            if not t.exists():
                os.replace(tmp, t)
            elif _exchange(tmp, t):
                shutil.rmtree(tmp, ignore_errors=True)  # now the old directory
            else:
                old = Path(tempfile.mkdtemp(prefix=f".{t.name}.{_OLD_TAG}", dir=t.parent))
                os.replace(t, old / "x")
                os.replace(tmp, t)
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


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
        # no array cache: chunked reads must not keep the chunks they read
        return uproot.open(p, array_cache=None)
    except MemoryError:
        raise
    except Exception as exc:  # uproot raises many kinds on a corrupt file
        raise error(f"{path}: not a readable ROOT file ({error_reason(exc)}): truncated or "
                    "corrupt, expected a complete ROOT file") from exc


def sha256sum(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- checked reads
def error_reason(exc: BaseException) -> str:
    """``exc`` as one short line: its type and the first line of its message."""
    lines = str(exc).strip().splitlines()
    text = lines[0].strip() if lines else ""
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def open_tree(path: str | os.PathLike[str], treename: str, error: type[Exception]
              ) -> tuple[Any, Any]:
    """``(file, tree)``: the TTree ``treename`` of the ROOT file ``path`` (the caller closes
    the file); raise ``error`` naming the file when it is unreadable, has no such tree, or
    ``treename`` is not a TTree."""
    f = open_root(path, error)
    try:
        obj = f[treename] if treename in f else None
    except MemoryError:
        f.close()
        raise
    except Exception as exc:  # the TTree's metadata is read here: corrupt bytes fail here
        f.close()
        raise error(f"{path}: tree '{treename}' cannot be read ({error_reason(exc)}): the "
                    "file is truncated or corrupt, expected a complete ROOT file") from exc
    if obj is None:
        keys = list(f.keys())
        f.close()
        raise error(f"{path}: no tree '{treename}' (keys: {keys})")
    if not hasattr(obj, "num_entries"):
        f.close()
        raise error(f"{path}: '{treename}' is a {type(obj).__name__}, expected a TTree")
    return f, obj


def read_branch(tree: Any, branch: str, path: str | os.PathLike[str], entry_start: int,
                entry_stop: int, error: type[Exception]) -> Any:
    """Entries ``[entry_start, entry_stop)`` of ``branch`` of an open uproot ``tree`` as an
    awkward array (``(n,)`` or ``n * var``); raise ``error`` naming the file, the branch
    and the entry range when its baskets cannot be read or decompressed (a truncated or
    corrupt file)."""
    try:
        return tree[branch].array(entry_start=entry_start, entry_stop=entry_stop,
                                  library="ak")
    except MemoryError:
        raise
    except Exception as exc:  # zlib/lzma errors, OSError, ValueError, KeyError, ...
        raise error(f"{path}: branch '{branch}', entries [{entry_start}, {entry_stop}): "
                    f"cannot be read ({error_reason(exc)}): the file is truncated or corrupt, "
                    "expected a complete ROOT file") from exc


def check_finite(values: Any, path: str | os.PathLike[str], branch: str, entry_start: int,
                 error: type[Exception]) -> None:
    """Raise ``error`` naming the file, branch and entry of the first NaN or inf in
    ``values``: branch ``branch`` as read from entry ``entry_start`` on, flat ``(n,)`` or
    jagged ``n * var`` (a numpy or awkward array; integer branches always pass)."""
    import awkward as ak
    import numpy as np

    jagged = isinstance(values, ak.Array) and values.ndim > 1
    flat = ak.to_numpy(ak.flatten(values, axis=1) if jagged else values)
    if not np.issubdtype(flat.dtype, np.floating):
        return
    finite = np.isfinite(flat)
    if finite.all():
        return
    i = int(np.argmin(finite))
    where = f"entry {entry_start + i}"
    if jagged:
        ends = np.cumsum(ak.to_numpy(ak.num(values, axis=1)))
        row = int(np.searchsorted(ends, i, side="right"))
        first = int(ends[row - 1]) if row else 0
        where = f"entry {entry_start + row} (item {i - first})"
    raise error(f"{path}: branch '{branch}' is {flat[i]} at {where}; expected finite values "
                "(no NaN or inf)")
