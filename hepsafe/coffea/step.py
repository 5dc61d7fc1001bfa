"""``AdversarialSystematics``: the processor step that scores nominal and varied jets.

Per chunk: event record -> :class:`~hepsafe.coffea.inputs.JetSource` columns ->
:class:`~hepsafe.data.jets.JetBatch` -> for the nominal and every configured variation (physics,
learned adversary, optionally an attack): varied jets -> tagger score (the
:class:`~hepsafe.coffea.wrapper.OnnxWrapper`) -> a per-jet *table*::

    {label, weight,
     nominal: {score, pt, mass},
     systematics: {<name>: {up: {score, pt, mass}, down: {score, pt, mass}}, ...},
     anomaly: {msp, entropy, max_logit, energy, mahalanobis}}   (with an anomaly scorer)

(pt, mass [GeV] of the varied jet, and msoftdrop when the jets carry a soft-drop mass; a
one-sided systematic's ``down`` is the nominal). For
PFNano the table has the events x jets structure of the collection. The step then

- attaches it to the jets (:meth:`AdversarialSystematics.attach`): fields
  ``hepsafe_score`` and ``hepsafe_systematics`` (``jets.hepsafe_systematics.escale.up.score``),
  and ``hepsafe_anomaly`` with an anomaly scorer (``jets.hepsafe_anomaly.energy``);
- fills a template histogram (:meth:`AdversarialSystematics.fill`): observable x
  ``sample`` x ``variation`` with Weight storage, the layout of :mod:`hepsafe.templates.booking`
  (``nominal``, ``<name>_up``, ``<name>_down``), each variation with its own region
  selection (the region, jet pT and mass, recomputed on the varied jets).

Everything per jet is keyed on (event, jet index), never on the chunk, so histograms are
bit-identical for any chunking and executor (with integer-valued weights, whose sums are
exact; scale samples after accumulating, :func:`~hepsafe.coffea.processor.scale_samples`).
The same table function runs eagerly (coffea ``Runner``, virtual arrays) and per partition
under dask-awkward (:meth:`AdversarialSystematics.table_of`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import awkward as ak
import hist
import numpy as np

from hepsafe.coffea.inputs import JetSource, detect_source
from hepsafe.coffea.wrapper import OnnxWrapper
from hepsafe.data.jets import JetBatch
from hepsafe.data.regions import Region
from hepsafe.exceptions import ConfigError, TemplateError
from hepsafe.perturbation.shifts import Systematic, apply_shift
from hepsafe.templates import booking as T

#: default bins of the tagger score
DEFAULT_EDGES = np.linspace(0.0, 1.0, 11)
_KINEMATICS = ("score", "pt", "mass")


def _record(score: np.ndarray, jets: JetBatch) -> dict[str, np.ndarray]:
    out = {"score": np.asarray(score, dtype=np.float32),
           "pt": np.asarray(jets.pt, dtype=np.float32),
           "mass": np.asarray(jets.mass, dtype=np.float32)}
    if jets.msoftdrop is not None:
        out["msoftdrop"] = np.asarray(jets.msoftdrop, dtype=np.float32)
    return out


def _lib(x: Any) -> Any:
    if isinstance(x, ak.Array):
        return ak
    import dask_awkward

    return dask_awkward


class AdversarialSystematics:
    """Nominal and varied tagger scores per jet, attached to the jets and filled as templates.

    ``tagger``: an :class:`OnnxWrapper` (default the reference PFN). ``systematics``: the
    :class:`~hepsafe.perturbation.shifts.Systematic` s to evaluate (default none: nominal
    only), each shift applied by :func:`~hepsafe.perturbation.shifts.apply_shift` as in
    ``hepsafe run``.
    ``edges``: bins of the score, shape ``(n_bins + 1,)``; ``observable``/``label``: the axis
    name and title. ``region``: the signal region, a :class:`~hepsafe.data.regions.Region` (or
    its mapping ``{jet_pt: [low, high], jet_mass: [low, high]}``, GeV), applied to each
    variation's own jets (None: all jets); ``mass_window``: ``(low, high)`` jet mass [GeV],
    shorthand for ``region=Region(jet_mass=mass_window)``. ``samples``: ``{truth label:
    sample name}`` splitting the jets by label (jets with other labels are not filled);
    None: one sample named after the dataset. ``source``: the input format (None:
    detected per chunk). ``collection``: the PFNano collection used when detecting
    ("FatJet" or "Jet").
    ``score_varied``: "all" scores every varied jet; "selected" scores a varied jet only
    when it can enter the templates (its varied jet in the region, its label a booked
    sample), the others get NaN in the attached fields (cheaper; the templates are the
    same). Jets a variation leaves unchanged keep their nominal score in both modes.
    ``anomaly``: an :class:`~hepsafe.anomaly.scorer.AnomalyScorer` whose scores of the
    nominal jets are attached too (``<prefix>_anomaly.<score>``; None: none).
    """

    def __init__(
        self,
        tagger: OnnxWrapper | None = None,
        systematics: Sequence[Systematic] = (),
        *,
        edges: Sequence[float] | np.ndarray = DEFAULT_EDGES,
        observable: str = "score",
        label: str | None = None,
        mass_window: tuple[float, float] | None = None,
        region: Region | Mapping[str, Any] | None = None,
        samples: Mapping[int, str] | None = None,
        source: JetSource | None = None,
        collection: str = "FatJet",
        prefix: str = "hepsafe",
        score_varied: str = "all",
        anomaly: Any = None,
    ) -> None:
        if score_varied not in ("all", "selected"):
            raise ConfigError(f"option 'score_varied': expected 'all' or 'selected', got "
                              f"{score_varied!r}")
        self.score_varied = score_varied
        self.anomaly = anomaly
        self.tagger = tagger if tagger is not None else OnnxWrapper()
        self.systematics = list(systematics)
        names = [s.name for s in self.systematics]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"option 'systematics': name(s) {dup} appear more than once")
        self.edges = np.asarray(edges, dtype=np.float64)
        T.book(self.edges, observable)  # checks the edges
        self.observable = observable
        self.label = label or f"{self.tagger.name} {observable}"
        if mass_window is not None and region is not None:
            raise ConfigError("options 'mass_window' and 'region': give one (the region's "
                              "'jet_mass' is the mass window)")
        if mass_window is not None:
            try:
                region = Region(jet_mass=cast("tuple[float, float]", tuple(mass_window)))
            except (ConfigError, TypeError, ValueError) as exc:
                raise ConfigError(f"option 'mass_window': expected (low, high) in GeV, got "
                                  f"{mass_window!r}") from exc
        if region is not None and not isinstance(region, Region):
            region = Region.from_dict(region)
        self.region = region if region is not None else Region()
        self.samples = None if samples is None else {int(k): T.check_name(v, "sample")
                                                     for k, v in samples.items()}
        self.source = source
        self.collection = collection
        self.prefix = prefix

    # ------------------------------------------------------------------ names
    @property
    def variations(self) -> list[str]:
        """Variation labels filled, in axis order: ``nominal`` then each side of each systematic."""
        return [T.NOMINAL] + [label for s in self.systematics for label, _ in s.sides()]

    def sample_names(self, dataset: str) -> list[str]:
        """Sample categories of a chunk from ``dataset``."""
        return list(dict.fromkeys(self.samples.values())) if self.samples else [dataset]

    def source_of(self, events: Any) -> JetSource:
        """The configured :class:`JetSource`, or the one detected from ``events``."""
        return self.source if self.source is not None else detect_source(events, self.collection)

    # ------------------------------------------------------------------ per-jet values
    def evaluate(self, jets: JetBatch) -> dict[str, dict[str, np.ndarray]]:
        """``{variation label: {"score", "pt", "mass"}}``, each float32 ``(n_jets,)``."""
        inputs = self.tagger.inputs_of(jets.parts)
        out = {T.NOMINAL: _record(self.tagger.score_inputs(inputs), jets)}
        for syst in self.systematics:
            for label, shift in syst.sides():
                varied = apply_shift(shift, jets, self.tagger, inputs).jets
                if len(varied) != len(jets):
                    raise ConfigError(f"systematic '{syst.name}': shift {shift!r} returned "
                                      f"{len(varied)} jets for {len(jets)}")
                score = out[T.NOMINAL]["score"].copy()
                todo = _changed(jets, varied)
                if self.score_varied == "selected":
                    score[~self.in_templates(varied)] = np.nan
                    todo &= self.in_templates(varied)
                if todo.any():
                    score[todo] = self.tagger.score(varied[todo].parts)
                out[label] = _record(score, varied)
        return out

    @property
    def mass_window(self) -> tuple[float, float] | None:
        """The region's jet mass window ``(low, high)`` [GeV], or None."""
        return self.region.jet_mass

    def in_templates(self, jets: JetBatch) -> np.ndarray:
        """Jets that can enter the templates, bool ``(n_jets,)``: inside the region (jet pT
        and mass [GeV]) and label one of the booked samples (when split by label)."""
        keep = self.region.mask(jets)
        if self.samples:
            keep &= np.isin(jets.label, list(self.samples))
        return keep

    def table(self, jets: JetBatch, counts: np.ndarray | None = None) -> ak.Array:
        """The per-jet table (module docstring) of ``jets``; with ``counts`` (jets per event)
        it gets the events x jets structure."""
        values = self.evaluate(jets)
        nominal = values[T.NOMINAL]
        systs = {}
        for syst in self.systematics:
            up = values[f"{syst.name}_up"]
            down = values.get(f"{syst.name}_down", nominal)
            systs[syst.name] = {"up": up, "down": down}
        flat = {
            "label": np.asarray(jets.label, dtype=np.int32),
            "weight": np.asarray(jets.weight, dtype=np.float32),
            "nominal": nominal,
        }
        if systs:
            flat["systematics"] = systs
        if self.anomaly is not None:
            flat["anomaly"] = self.anomaly(jets)
        table = _zip_table(flat)
        if counts is not None:
            table = ak.unflatten(table, np.asarray(counts, dtype=np.int64))
        return table

    def table_of(self, events: Any, where: str = "events") -> Any:
        """The table of an event record: eager/virtual arrays -> ``ak.Array``, dask-awkward
        -> ``dask_awkward.Array`` (one ``map_partitions`` over the needed columns)."""
        source = self.source_of(events)
        cols = source.columns(events, where)
        meta = getattr(events, "metadata", None) or {}
        if isinstance(events, ak.Array):
            return _TableFn(self, source, list(cols), where, meta.get("entrystart"))(*cols.values())
        import dask_awkward as dak

        return dak.map_partitions(
            _TableFn(self, source, list(cols), where, None), *cols.values(),
            label="hepsafe-adversarial-systematics",
        )

    # ------------------------------------------------------------------ coffea-facing
    def attach(self, jets: Any, table: Any) -> Any:
        """``jets`` (the collection) with fields ``<prefix>_score`` (nominal score),
        ``<prefix>_systematics`` (``.<name>.up/.down`` records of score, pt, mass) and, with
        an anomaly scorer, ``<prefix>_anomaly`` (the nominal jets' anomaly scores); a new
        array, ``jets`` is not modified."""
        lib = _lib(jets)
        out = lib.with_field(jets, table["nominal", "score"], f"{self.prefix}_score")
        if self.systematics:
            out = lib.with_field(out, table["systematics"], f"{self.prefix}_systematics")
        if self.anomaly is not None:
            out = lib.with_field(out, table["anomaly"], f"{self.prefix}_anomaly")
        return out

    def book(self, samples: Sequence[str] = ()) -> hist.Hist:
        """An empty template histogram: observable x sample x variation (Weight storage),
        with ``samples`` and every variation of :attr:`variations` booked in order."""
        return T.new_hist(self.edges, self.observable, self.label, list(samples),
                           self.variations)

    def book_dask(self, samples: Sequence[str] = ()) -> Any:
        """The same histogram for dask (``hist.dask.Hist``; needs dask-histogram)."""
        import hist.dask as hda

        with _quiet_hist():
            return hda.Hist(*self.book(samples).axes, storage=hist.storage.Weight())

    def selections(self, table: Any, dataset: str) -> list[tuple[str, str, Any, Any]]:
        """``[(sample, variation, score, weight), ...]``: flat per-jet arrays of the jets
        that enter each template cell (sample by label or dataset, region per variation)."""
        lib = _lib(table)
        if table.ndim == 2:
            table = lib.flatten(table, axis=1)
        weight = table["weight"]
        label = table["label"]
        cells = []
        for variation in self.variations:
            if variation == T.NOMINAL:
                rec = table["nominal"]
            else:
                name, side = cast("tuple[str, str]", T.split_variation(variation))
                rec = table["systematics", name, side]
            msd = rec["msoftdrop"] if "msoftdrop" in rec.fields else None
            keep = self.region.select(rec["pt"], rec["mass"], msd, "the table's jets")
            groups: list[tuple[str, Any]] = (
                [(s, label == k) for k, s in self.samples.items()] if self.samples
                else [(dataset, None)]
            )
            for sample, sel in groups:
                both = sel if keep is None else (keep if sel is None else keep & sel)
                score = rec["score"] if both is None else rec["score"][both]
                w = weight if both is None else weight[both]
                cells.append((sample, variation, score, w))
        return cells

    def fill(self, h: Any, table: Any, dataset: str) -> Any:
        """Fill ``h`` (from :meth:`book` or :meth:`book_dask`) in place with a table's jets;
        returns ``h``. Scores outside the edges are dropped; a score on the last edge counts
        in the last bin. Raises TemplateError for non-finite scores or weights (eager)."""
        for sample, variation, score, w in self.selections(table, dataset):
            if isinstance(score, ak.Array):
                x = np.asarray(ak.to_numpy(score), dtype=np.float64)
                wx = np.asarray(ak.to_numpy(w), dtype=np.float64)
                bad = ~np.isfinite(x) | ~np.isfinite(wx)
                if bad.any():
                    raise TemplateError(f"fill({sample}, {variation}): {int(bad.sum())} "
                                        "non-finite score(s) or weight(s)")
                h.fill(x, sample, variation, weight=wx)
            else:
                h.fill(score, sample, variation, weight=w)
        return h


def _changed(nominal: JetBatch, varied: JetBatch) -> np.ndarray:
    """Jets whose kept constituents differ between two batches, bool ``(n_jets,)``.

    An unchanged jet keeps its nominal score (the tagger sees the same inputs), so only
    changed jets are scored again."""
    counts = nominal.n_parts
    if not np.array_equal(counts, varied.n_parts):
        return np.ones(len(nominal), dtype=bool)
    diff = np.zeros(int(counts.sum()), dtype=bool)
    for f in ("pt", "eta", "phi", "energy", "charge"):
        if f in nominal.parts.fields:
            diff |= nominal.flat(f) != varied.flat(f)
    keep = [b.flat("mask") if "mask" in b.parts.fields else np.ones(len(diff), dtype=bool)
            for b in (nominal, varied)]
    diff |= keep[0] != keep[1]
    jet_of = np.repeat(np.arange(len(nominal)), counts)
    return np.bincount(jet_of[diff], minlength=len(nominal)) > 0


def _zip_table(flat: Mapping[str, Any]) -> ak.Array:
    """Nested dicts of flat numpy arrays as one record array (same type at any length)."""

    def node(x: Any) -> Any:
        if isinstance(x, Mapping):
            return ak.zip({k: node(v) for k, v in x.items()}, depth_limit=1)
        return ak.Array(np.asarray(x))

    return node(flat)


class _TableFn:
    """Picklable per-partition function: columns of one chunk -> the step's table."""

    def __init__(self, step: AdversarialSystematics, source: JetSource, names: list[str],
                 where: str, entry_start: int | None) -> None:
        self.step = step
        self.source = source
        self.names = names
        self.where = where
        self.entry_start = entry_start

    def __call__(self, *arrays: Any) -> ak.Array:
        typetracer = any(ak.backend(a) == "typetracer" for a in arrays)
        if typetracer:
            arrays = tuple(ak.typetracer.length_zero_if_typetracer(a) for a in arrays)
        cols = dict(zip(self.names, arrays, strict=True))
        jets = self.source.batch(cols, self.where, self.entry_start)
        out = self.step.table(jets, self.source.counts(cols))
        if typetracer:
            return ak.Array(out.layout.to_typetracer(forget_length=True))
        return out


class _quiet_hist:
    """Silence hist's warning that 'sample' is a protected keyword (axes filled by position)."""

    def __enter__(self) -> None:
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.filterwarnings("ignore", message=".*protected keyword.*")

    def __exit__(self, *exc: Any) -> None:
        self._ctx.__exit__(*exc)
