"""Template hygiene before a fit: checks, systematic selection, clipping of negative
yields, symmetrisation of one-sided variations, smoothing, and bin merging.

Every function returns new :class:`~hepsafe.templates.booking.Templates`; its input is unchanged.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from hepsafe.exceptions import TemplateError, TemplateWarning
from hepsafe.templates.booking import (
    DOWN,
    NOMINAL,
    UP,
    Templates,
    cell_contents,
    split_variation,
    variation_name,
    with_cell_contents,
)


def check(t: Templates, exclude: Sequence[str] = ()) -> None:
    """Raise TemplateError for templates a fit cannot use.

    Every sample on a region's axis (except those in ``exclude``, e.g. observed data) needs
    a nominal with a positive total yield, and every variation a positive total yield.
    """
    for r in t.regions:
        for s in t.sample_axis(r):
            if s in exclude:
                continue
            present = t.variations(r, s)
            if not present:
                raise TemplateError(
                    f"template {r}_{s}_{NOMINAL} has total yield 0 (sample {s!r} is on the "
                    f"axis of region {r!r} but every bin is empty)"
                )
            if NOMINAL not in present:
                raise TemplateError(
                    f"missing nominal: no template {r}_{s}_{NOMINAL} (region {r!r}, sample "
                    f"{s!r} has only {present})"
                )
            for v in present:
                total = float(t.values(r, s, v).sum())
                if not total > 0:
                    raise TemplateError(
                        f"template {r}_{s}_{v} has total yield {total:g}; a fit needs a "
                        "positive yield for every sample and variation"
                    )


def select_systematics(t: Templates, names: Sequence[str]) -> Templates:
    """New templates keeping only the nominals and the systematics ``names``."""
    have = t.systematics()
    missing = [n for n in names if n not in have]
    if missing:
        raise TemplateError(f"systematics {missing} not in the templates (have {have})")
    contents = cell_contents(t)
    for rc in contents.values():
        for s, v in list(rc):
            parsed = split_variation(v)
            if parsed and parsed[0] not in names:
                del rc[(s, v)]
    return with_cell_contents(t, contents)


def clip_negative(t: Templates, floor: float = 0.0, exclude: Sequence[str] = ()) -> Templates:
    """New templates with bin values below ``floor`` set to ``floor``, with a TemplateWarning.

    The warning names every clipped template and its bins. Samples in ``exclude`` are kept.
    """
    contents = cell_contents(t)
    clipped = []
    for r, rc in contents.items():
        for (s, v), (vals, var) in rc.items():
            bad = np.nonzero(vals < floor)[0]
            if len(bad) and s not in exclude:
                clipped.append(f"{r}_{s}_{v} bins {bad.tolist()}")
                rc[(s, v)] = (np.where(vals < floor, floor, vals), var)
    if clipped:
        warnings.warn(
            f"clipped yields below {floor:g} to {floor:g} in: {'; '.join(clipped)}",
            TemplateWarning,
            stacklevel=2,
        )
    return with_cell_contents(t, contents)


def symmetrize(t: Templates, names: Sequence[str] | None = None) -> Templates:
    """New templates where a one-sided systematic gets its mirror image.

    For a systematic with only ``<name>_up`` the down template is ``2 * nominal - up`` (and
    vice versa), with the same variances. ``names`` restricts which systematics (default
    all). Mirrors may be negative in some bins; :func:`clip_negative` handles them.
    """
    contents = cell_contents(t)
    for r, rc in contents.items():
        for s in t.samples(r):
            present = t.variations(r, s)
            for name in t.systematics(r):
                if names is not None and name not in names:
                    continue
                up, down = variation_name(name, UP), variation_name(name, DOWN)
                if (up in present) == (down in present):
                    continue
                have, want = (up, down) if up in present else (down, up)
                nom = rc[(s, NOMINAL)][0]
                vals, var = rc[(s, have)]
                rc[(s, want)] = (2.0 * nom - vals, var.copy())
    return with_cell_contents(t, contents)


def one_sided(t: Templates) -> list[tuple[str, str, str]]:
    """The one-sided variations of ``t``: ``(region, sample, variation present)`` for every
    systematic of a sample that has ``<name>_up`` or ``<name>_down`` but not both."""
    out = []
    for r in t.regions:
        for s in t.samples(r):
            present = t.variations(r, s)
            for name in t.systematics(r):
                up, down = variation_name(name, UP), variation_name(name, DOWN)
                if (up in present) != (down in present):
                    out.append((r, s, up if up in present else down))
    return out


def smooth_ratio(nominal: np.ndarray, varied: np.ndarray, passes: int = 1) -> np.ndarray:
    """Smooth a variation: its ratio to nominal is smoothed with a (1, 2, 1) kernel.

    ``nominal`` and ``varied`` have shape ``(n_bins,)``; the result has the varied total
    (normalisation kept, shape smoothed). Bins with zero nominal keep ratio 1.
    """
    nom = np.asarray(nominal, np.float64)
    var = np.asarray(varied, np.float64)
    if len(nom) < 3 or passes < 1:
        return var.copy()
    ratio = np.divide(var, nom, out=np.ones_like(nom), where=nom != 0)
    delta = ratio - 1.0
    for _ in range(passes):
        padded = np.concatenate([delta[:1], delta, delta[-1:]])
        delta = 0.25 * padded[:-2] + 0.5 * padded[1:-1] + 0.25 * padded[2:]
    out = nom * (1.0 + delta)
    total, new_total = var.sum(), out.sum()
    if new_total != 0:
        out = out * (total / new_total)
    return out


def smooth(t: Templates, names: Sequence[str] | None = None, passes: int = 1) -> Templates:
    """New templates whose variations (``names``, default all) are smoothed per bin.

    See :func:`smooth_ratio`; variances are kept.
    """
    contents = cell_contents(t)
    for rc in contents.values():
        for (s, v), (vals, var) in list(rc.items()):
            parsed = split_variation(v)
            if parsed is None or (names is not None and parsed[0] not in names):
                continue
            rc[(s, v)] = (smooth_ratio(rc[(s, NOMINAL)][0], vals, passes), var)
    return with_cell_contents(t, contents)


def merge_plan(values: np.ndarray, variances: np.ndarray, max_rel_error: float) -> list[int]:
    """Indices of the edges to keep so that every merged bin has rel. stat. error <= max.

    ``values`` and ``variances`` (shape ``(n_bins,)``) are the total to judge (for example
    the summed background). Bins are merged left to right; a short last group joins the
    previous one. Returns edge indices, shape ``(n_merged + 1,)``, first 0 and last n_bins.
    """
    if not max_rel_error > 0:
        raise TemplateError(f"merge: max_rel_error must be > 0, got {max_rel_error}")
    keep = [0]
    acc_v = acc_var = 0.0
    n = len(values)
    for i in range(n):
        acc_v += float(values[i])
        acc_var += float(variances[i])
        if acc_v > 0 and np.sqrt(acc_var) <= max_rel_error * acc_v:
            keep.append(i + 1)
            acc_v = acc_var = 0.0
    if keep[-1] != n:
        if len(keep) > 1:
            keep[-1] = n
        else:
            keep.append(n)
    return keep


def rebin(t: Templates, region: str, keep: Sequence[int]) -> Templates:
    """New templates where ``region`` keeps only edges ``keep`` (indices into its edges).

    Values and variances of merged bins are summed; other regions are unchanged.
    """
    edges = t.edges(region)
    k = np.asarray(keep, dtype=np.int64)
    if len(k) < 2 or k[0] != 0 or k[-1] != len(edges) - 1 or np.any(np.diff(k) <= 0):
        raise TemplateError(
            f"rebin({region!r}): keep must increase from 0 to {len(edges) - 1}, got {list(keep)}"
        )
    contents = cell_contents(t)
    contents[region] = {
        key: (np.add.reduceat(vals, k[:-1]), np.add.reduceat(var, k[:-1]))
        for key, (vals, var) in contents[region].items()
    }
    return with_cell_contents(t, contents, edges={region: edges[k]})


def positive_plan(values: np.ndarray) -> list[int]:
    """Indices of the edges to keep so that every merged bin of ``values`` (shape
    ``(n_bins,)``, e.g. the summed background) is positive; bins are merged left to right,
    a non-positive last group joins the previous one. Returns ``(n_merged + 1,)`` indices,
    first 0 and last n_bins (all of them when no bin needs merging)."""
    keep, acc = [0], 0.0
    n = len(values)
    for i in range(n):
        acc += float(values[i])
        if acc > 0:
            keep.append(i + 1)
            acc = 0.0
    if keep[-1] != n:
        if len(keep) > 1:
            keep[-1] = n
        else:
            keep.append(n)
    return keep


def merge_empty_bins(t: Templates, samples: Sequence[str]) -> Templates:
    """New templates whose bins are merged with their neighbours until the summed nominal of
    ``samples`` (e.g. the backgrounds) is positive in every bin of every region."""
    out = t
    for r in t.regions:
        names = [s for s in t.samples(r) if s in samples]
        if not names:
            continue
        keep = positive_plan(np.asarray(sum(t.values(r, s) for s in names)))
        if len(keep) != len(t.edges(r)):
            out = rebin(out, r, keep)
    return out


def merge_low_stat(
    t: Templates, max_rel_error: float = 0.2, samples: Sequence[str] | None = None
) -> Templates:
    """New templates whose bins are merged until the nominal total of ``samples`` (default:
    every sample) has a relative statistical error <= ``max_rel_error`` in every bin."""
    out = t
    for r in t.regions:
        names = [s for s in t.samples(r) if samples is None or s in samples]
        if not names:
            continue
        vals = sum(t.values(r, s) for s in names)
        var = sum(t.variances(r, s) for s in names)
        keep = merge_plan(np.asarray(vals), np.asarray(var), max_rel_error)
        if len(keep) != len(t.edges(r)):
            out = rebin(out, r, keep)
    return out
