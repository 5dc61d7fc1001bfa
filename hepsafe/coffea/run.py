"""Run a processor over a fileset with any executor, and say what was (not) processed.

:func:`run_fileset` drives ``coffea.processor.Runner`` ("iterative", "futures" or "dask"
executor, or an executor instance); :func:`run_apply_to_fileset` drives the dask-awkward
path (``coffea.dataset_tools.preprocess`` + ``apply_to_fileset``). Both return
``(output, RunReport)``: the report compares the entries processed with those in each file.

A corrupt or missing file either stops the run with an :class:`~hepsafe.exceptions.InputError`
naming the file (``skipbadfiles=False``, the default) or is skipped and reported
(``skipbadfiles=True``: listed in :attr:`RunReport.skipped` with the reason, and a
:class:`SkippedFilesWarning`); never a silent partial result.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import uproot
from coffea import processor
from coffea.nanoevents import BaseSchema
from coffea.processor.executor import ExecutorBase

from hepsafe.exceptions import ConfigError, InputError, SkippedFilesWarning

EXECUTORS = ("iterative", "futures", "dask")
#: exceptions that mark a file as bad (unreadable, corrupt, truncated, wrong tree or branches)
BAD_FILE_EXCEPTIONS: tuple[type[BaseException], ...] = (
    OSError, ValueError, KeyError, zlib.error, uproot.deserialization.DeserializationError)


@dataclass
class RunReport:
    """What a run covered. ``entries``: file -> entries in the file (None when it could not
    be opened); ``processed``: file -> entries processed; ``skipped``: file -> reason."""

    entries: dict[str, int | None] = field(default_factory=dict)
    processed: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """True when every entry of every file was processed."""
        return not self.skipped

    def summary(self) -> str:
        """One line per file: processed/entries, and the reason for each skipped file."""
        lines = []
        for f, n in self.entries.items():
            done = self.processed.get(f, 0)
            status = f"{done}/{n if n is not None else '?'} entries"
            if f in self.skipped:
                status += f" SKIPPED: {self.skipped[f]}"
            lines.append(f"{f}: {status}")
        return "\n".join(lines)


def make_executor(name: str, workers: int = 2, client: Any = None) -> ExecutorBase:
    """A coffea executor by name: "iterative", "futures" (``workers`` processes) or "dask"
    (``client``: a ``distributed.Client``; None makes a local one). No retries: a bad file
    fails at once, and progress bars are off."""
    if name == "iterative":
        return processor.IterativeExecutor(status=False, retries=0)
    if name == "futures":
        return processor.FuturesExecutor(workers=workers, status=False, retries=0)
    if name == "dask":
        return processor.DaskExecutor(client=client, status=False, retries=0)
    raise ConfigError(f"option 'executor': expected one of {EXECUTORS} or a coffea executor, "
                      f"got {name!r}")


def _files(fileset: Mapping[str, Any], treename: str | None) -> list[tuple[str, str, str]]:
    """``[(dataset, file, tree), ...]`` of a Runner-style fileset."""
    out = []
    for dataset, spec in fileset.items():
        files = spec["files"] if isinstance(spec, Mapping) else spec
        tree = spec.get("treename", treename) if isinstance(spec, Mapping) else treename
        if isinstance(files, Mapping):
            out += [(dataset, str(f), str(t)) for f, t in files.items()]
        else:
            if tree is None:
                raise ConfigError(f"fileset dataset '{dataset}': no tree name (give 'treename')")
            out += [(dataset, str(f), str(tree)) for f in files]
    return out


def _probe(path: str, tree: str, start: int = 0, stop: int | None = None) -> str:
    """Why ``path`` cannot be read: open it and read entries ``[start, stop)`` of ``tree``."""
    try:
        with uproot.open(path) as f:
            f[tree].arrays(entry_start=start, entry_stop=stop, library="np")
    except Exception as exc:  # uproot raises many kinds
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return "failed while processing (readable now; see the worker log)"


def _raise_bad_file(files: list[tuple[str, str, str]], exc: Exception) -> None:
    """Raise InputError naming the first unreadable file; re-raise ``exc`` if none is."""
    for _, f, t in files:
        why = _probe(f, t)
        if not why.startswith("failed while"):
            raise InputError(f"{f}: cannot read tree '{t}' ({why}); pass skipbadfiles=True to "
                             "skip bad files with a report") from exc
    raise exc


def _raise_bad_chunk(chunks: list[Any], exc: Exception) -> None:
    """Raise InputError naming the first chunk whose entries cannot be read; else ``exc``."""
    for c in chunks:
        why = _probe(c.filename, c.treename, c.entrystart, c.entrystop)
        if not why.startswith("failed while"):
            raise InputError(f"{c.filename}: entries {c.entrystart}:{c.entrystop} of tree "
                             f"'{c.treename}' cannot be read ({why}); pass skipbadfiles=True to "
                             "skip bad files with a report") from exc
    raise exc


def _finish(report: RunReport, skipbadfiles: bool) -> None:
    if report.skipped:
        msg = "; ".join(f"{f}: {r}" for f, r in report.skipped.items())
        if not skipbadfiles:
            raise InputError(f"bad file(s) in the fileset: {msg}")
        warnings.warn(f"skipped (skipbadfiles=True): {msg}", SkippedFilesWarning, stacklevel=3)


def run_fileset(
    fileset: Mapping[str, Any],
    processor_instance: processor.ProcessorABC,
    executor: str | ExecutorBase = "iterative",
    *,
    schema: Any = BaseSchema,
    treename: str | None = None,
    chunksize: int = 100_000,
    skipbadfiles: bool = False,
    workers: int = 2,
    client: Any = None,
    pre_executor: ExecutorBase | None = None,
) -> tuple[Any, RunReport]:
    """Run ``processor_instance`` over ``fileset`` (``{dataset: [files]}`` or coffea's
    dict forms) with ``coffea.processor.Runner``; returns ``(output, report)``.

    ``schema``: the NanoEvents schema (``BaseSchema`` for the hepsafe tree "jets",
    ``PFNanoAODSchema`` for PFNano "Events"). ``chunksize``: entries per chunk.
    ``pre_executor``: reads the files' metadata (default iterative, in this process: no
    worker start-up for a few file headers).
    """
    if chunksize < 1:
        raise ConfigError(f"option 'chunksize' must be >= 1, got {chunksize}")
    files = _files(fileset, treename)
    ex = executor if isinstance(executor, ExecutorBase) else make_executor(
        executor, workers, client)
    runner = processor.Runner(
        executor=ex,
        pre_executor=pre_executor or processor.IterativeExecutor(status=False, retries=0),
        chunksize=int(chunksize),
        skipbadfiles=BAD_FILE_EXCEPTIONS if skipbadfiles else False,
        schema=schema,
        metadata_cache={},  # a file rewritten in place is looked at afresh
    )
    report = RunReport()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Skipping bad file")
            chunks = list(runner.preprocess(fileset, treename=treename))
    except Exception as exc:
        _raise_bad_file(files, exc)
    for _, f, t in files:
        ends = [c.entrystop for c in chunks if c.filename == f]
        report.entries[f] = max(ends) if ends else None
        if not ends:
            report.skipped[f] = _probe(f, t)
    if not chunks:
        raise InputError(f"no readable file in the fileset: {report.skipped}")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping bad file")
        try:
            wrapped = runner.run(chunks, processor_instance, treename=treename)
        except ValueError as exc:
            if not skipbadfiles or "No chunks returned results" not in str(exc):
                _raise_bad_chunk(chunks, exc)
            wrapped = {"out": None, "processed": set()}
        except Exception as exc:
            _raise_bad_chunk(chunks, exc)
    done = {(c.filename, c.entrystart, c.entrystop) for c in wrapped.get("processed", ())}
    for c in chunks:
        if (c.filename, c.entrystart, c.entrystop) in done:
            report.processed[c.filename] = report.processed.get(c.filename, 0) + (
                c.entrystop - c.entrystart)
        elif c.filename not in report.skipped:
            why = _probe(c.filename, c.treename, c.entrystart, c.entrystop)
            report.skipped[c.filename] = f"entries {c.entrystart}:{c.entrystop} failed: {why}"
    _finish(report, skipbadfiles)
    if wrapped["out"] is None:
        raise InputError(f"no chunk of the fileset could be processed: {report.skipped}")
    return wrapped["out"], report


def run_apply_to_fileset(
    fileset: Mapping[str, Any],
    processor_instance: processor.ProcessorABC,
    *,
    schema: Any = BaseSchema,
    treename: str | None = None,
    chunksize: int = 100_000,
    skipbadfiles: bool = False,
    scheduler: Any = None,
) -> tuple[Any, RunReport]:
    """The dask-awkward path: ``preprocess`` + ``apply_to_fileset``, then ``dask.compute``
    (on ``scheduler``: a ``distributed.Client``, "threads", ... ; None: dask's default).

    The per-dataset outputs are merged (``coffea.processor.accumulate``) and passed to the
    processor's ``postprocess``. Needs dask-awkward and dask-histogram.
    """
    import dask
    from coffea.dataset_tools import DataGroupSpec, apply_to_fileset, preprocess

    files = _files(fileset, treename)
    spec = {ds: {"files": {f: t for d, f, t in files if d == ds}} for ds in fileset}
    report = RunReport()
    try:
        available = preprocess(
            DataGroupSpec.model_validate(spec), step_size=int(chunksize),
            skip_bad_files=bool(skipbadfiles), file_exceptions=BAD_FILE_EXCEPTIONS,
            allow_empty_datasets=bool(skipbadfiles),
            scheduler=scheduler if not hasattr(scheduler, "get") else scheduler.get,
        )[0].model_dump()
    except Exception as exc:
        _raise_bad_file(files, exc)
    kept = {f: s for ds in available.values() for f, s in ds["files"].items()}
    for _, f, t in files:
        steps = (kept.get(f) or {}).get("steps")
        report.entries[f] = int(steps[-1][1]) if steps else None
        if not steps:
            report.skipped[f] = _probe(f, t)
    available = {ds: v for ds, v in available.items() if v["files"]}
    if not available:
        raise InputError(f"no readable file in the fileset: {report.skipped}")
    out, access = apply_to_fileset(
        processor_instance, available, schemaclass=schema,
        uproot_options={"allow_read_errors_with_report": BAD_FILE_EXCEPTIONS},
    )
    kwargs = {} if scheduler is None else {"scheduler": scheduler}
    out, access = dask.compute(out, access, **kwargs)
    failed: dict[str, str] = {}
    for rep in access.values():
        for row in rep.tolist():
            if row.get("exception"):
                failed.setdefault(str(row.get("args", ["?"])[0]).strip("'\""),
                                  f"{row['exception']}: {row.get('message', '')}")
    for f, n in report.entries.items():
        if f in report.skipped:
            continue
        if f in failed or any(f in k for k in failed):
            report.skipped[f] = next(r for k, r in failed.items() if f in k or k in f)
        else:
            report.processed[f] = n or 0
    _finish(report, skipbadfiles)
    merged = processor.accumulate(out.values())
    post = processor_instance.postprocess(merged)
    return (post if post is not None else merged), report
