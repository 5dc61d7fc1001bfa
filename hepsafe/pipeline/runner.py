"""The main job: a run configuration -> nominal inference, variations and attacks, the
control-region gate, templates, the pyhf fit, and a report directory.

``run(config)`` is what ``hepsafe run CONFIG.yaml`` and ``hepsafe demo`` call. The output
directory is built in a temporary folder beside the target and renamed into place at the
end, so a failed run leaves no partial output, and an existing directory is replaced only
with ``force``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hepsafe import validation as validate
from hepsafe._files import output_directory, sha256sum, write_json
from hepsafe.data.jets import JetBatch
from hepsafe.data.regions import Region
from hepsafe.exceptions import (
    ConfigError,
    FitError,
    FitFailed,
    GateFailed,
    InputError,
    MirrorWarning,
    TemplateError,
    WorkspaceError,
)
from hepsafe.fit import results as stats
from hepsafe.fit import workspace as workspace
from hepsafe.perturbation.shifts import Systematic, apply_shift
from hepsafe.pipeline.config import RunConfig
from hepsafe.pipeline.summary import summary_table
from hepsafe.tagger.onnx import OnnxTagger
from hepsafe.templates import booking as T
from hepsafe.templates import files as templates_io
from hepsafe.templates import hygiene as hygiene

if TYPE_CHECKING:
    from hepsafe.attacks.base import AttackInfo

log = logging.getLogger("hepsafe.pipeline.runner")

REGION = "SR"
NOMINAL = T.NOMINAL


@dataclass
class Sample:
    """One configured sample: its jets (weights already scaled) and role."""

    name: str
    role: str
    jets: JetBatch
    files: list[str]


@dataclass
class Varied:
    """One side of a variation or an attack: its name, kind, and per-sample varied jets and
    scores; ``info``: what the attack did (None for a variation)."""

    name: str
    kind: str  # "variation" or "attack"
    direction: str  # "up", "down" (two-sided variations) or "up" alone (one-sided)
    jets: dict[str, JetBatch]
    scores: dict[str, np.ndarray]
    seconds: float = 0.0
    info: AttackInfo | None = None
    #: per sample, the varied jets inside the run's region, bool (n_jets,) (None: all)
    selected: dict[str, np.ndarray] | None = None

    def in_region(self) -> Varied:
        """The same variation restricted to its jets inside the region (for templates and
        plots; a copy when the region cuts, ``self`` otherwise)."""
        if self.selected is None:
            return self
        sel = self.selected
        return Varied(self.name, self.kind, self.direction,
                      {n: j[sel[n]] for n, j in self.jets.items()},
                      {n: s[sel[n]] for n, s in self.scores.items()}, self.seconds, self.info)

    @property
    def key(self) -> str:
        """Its label in the summary, gate and plots: ``name`` for an attack,
        ``name_up``/``name_down`` for a variation."""
        return self.name if self.kind == "attack" else f"{self.name}_{self.direction}"


@dataclass
class RunResult:
    """What a run produced: the summary rows, the gate verdicts, the fit report, and the
    output directory."""

    output: Path
    summary: list[dict[str, Any]]
    gates: dict[str, Any]
    fit: dict[str, Any]
    files: list[str]


# --------------------------------------------------------------------------- progress
class Progress:
    """Progress for long steps: a rich progress bar, or nothing in quiet mode."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self._bar: Any = None

    def __enter__(self) -> Progress:
        if not self.quiet:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("{task.description:<38}"), BarColumn(), TimeElapsedColumn(),
                transient=False,
            )
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    @contextlib.contextmanager
    def step(self, description: str, total: int = 1) -> Iterator[Callable[..., None]]:
        """A step with ``total`` units; yields ``advance(n)``."""
        if self._bar is None:
            yield lambda n=1: None
            return
        task = self._bar.add_task(description, total=total)
        try:
            yield lambda n=1: self._bar.advance(task, n)
        finally:
            self._bar.update(task, completed=total)


# --------------------------------------------------------------------------- inputs
def read_sample(cfg: RunConfig, i: int) -> JetBatch:
    """The jets of sample ``i``: its files read in chunks of ``read.step_size`` entries
    (:func:`hepsafe.data.reading.read_selected`), cut by label, split and ``max_jets``,
    weights times ``scale``. A sample left without jets is an InputError naming the key."""
    from hepsafe.data.reading import read_selected

    s, r = cfg.samples[i], cfg.read
    files = list(s.files)
    jets = read_selected(files, r.format, r.tree, s.label, s.split, s.max_jets, r.step_size,
                         r.collection, r.puppi)
    if jets is None:
        raise InputError(f"{cfg.source}: key 'samples/{i}' ('{s.name}'): no jets selected "
                         f"from {files}")
    if cfg.region.jet_msoftdrop is not None and jets.msoftdrop is None:
        raise ConfigError(f"{cfg.source}: key 'region/jet_msoftdrop': sample '{s.name}' has "
                          f"no soft-drop mass (no branch {r.collection}_msoftdrop in {files})")
    if cfg.region.cuts and not cfg.region.mask(jets).any():
        raise ConfigError(f"{cfg.source}: key 'region': selects no jet of sample '{s.name}' "
                          f"({cfg.region.describe()}; its {len(jets)} jets lie outside)")
    if s.scale is not None:
        jets = jets.replace(weight=(jets.weight * s.scale).astype(np.float32))
    return jets


def load_samples(cfg: RunConfig) -> dict[str, Sample]:
    """Read every configured sample (:func:`read_sample`), by name, in file order."""
    return {s.name: Sample(s.name, s.role, read_sample(cfg, i), list(s.files))
            for i, s in enumerate(cfg.samples)}


# --------------------------------------------------------------------------- output dir
def run_inputs(cfg: RunConfig) -> list[Path]:
    """Every input file of the run: the configuration file, the samples, the tagger and its
    card, the envelope file, the attacks' models and cards (the output directory may be none
    of them nor contain any)."""
    from hepsafe.tagger.card import card_path

    paths: list[str | Path] = [cfg.source] if Path(cfg.source).is_file() else []
    paths += [f for s in cfg.samples for f in s.files]
    paths += [cfg.tagger.model, cfg.tagger.card_file()]
    if cfg.envelope_file is not None:
        paths.append(cfg.envelope_file)
    for model in cfg.attack_models:
        paths += [model, card_path(model)]
    return [Path(p) for p in paths]


@contextlib.contextmanager
def output_dir(target: Path, force: bool, inputs: Sequence[Path] = (),
               writer: str = "hepsafe run") -> Iterator[Path]:
    """A temporary directory beside ``target``, swapped onto it when the block succeeds
    (:func:`hepsafe._files.output_directory`: marker, lock, the rules of ``--force``).

    Without ``force`` an existing ``target`` raises :class:`OutputExistsError` before any
    work; with it, only a directory hepsafe wrote is replaced, and only once the new one is
    complete. A target that is or contains one of ``inputs`` or the working directory is
    refused.
    """
    with output_directory(target, force=force, inputs=inputs, writer=writer) as tmp:
        yield tmp


# --------------------------------------------------------------------------- the run
def region_masks(region: Region, jets: dict[str, JetBatch]) -> dict[str, np.ndarray]:
    """Per sample, its jets inside ``region``, bool ``(n_jets,)``."""
    return {name: region.mask(j) for name, j in jets.items()}


@contextlib.contextmanager
def _named(cfg: RunConfig, syst: Systematic) -> Iterator[None]:
    """A ConfigError inside the block names the systematic's key and name."""
    try:
        yield
    except ConfigError as exc:
        raise ConfigError(f"{cfg.source}: key '{cfg.key_of(syst.name)}' ('{syst.name}'): "
                          f"{exc}") from exc


def _steps(systematics: Sequence[Systematic]) -> list[tuple[str, list[Systematic]]]:
    """Progress steps: every physics variation in one, then one per attack."""
    out = [("physics variations", [s for s in systematics if s.kind == "variation"])]
    return out + [(f"attack {s.name}", [s]) for s in systematics if s.kind == "attack"]


def _vary(cfg: RunConfig, syst: Systematic, direction: str, shift: Any,
          samples: dict[str, Sample], tagger: OnnxTagger,
          advance: Callable[[int], None]) -> Varied:
    """One side of a systematic on every sample: varied jets, their scores, the region."""
    t0 = time.perf_counter()
    jets, scores = {}, {}
    info = None
    for name, s in samples.items():
        with _named(cfg, syst):
            jets[name], info = apply_shift(shift, s.jets, tagger)
        scores[name] = tagger.predict(jets[name])
        advance(1)
    return Varied(syst.name, syst.kind, direction, jets, scores, time.perf_counter() - t0,
                  info, region_masks(cfg.region, jets))


def run(
    cfg: RunConfig, force: bool = False, quiet: bool = False, strict_gate: bool = False
) -> RunResult:
    """Run the whole chain for ``cfg``; write the output directory; return a summary.

    The output directory is checked and locked before any work. When the fit cannot be done
    (e.g. an empty background bin), every other output is still written and
    :class:`FitFailed` is raised after it is in place.
    """
    from hepsafe.report import document as report
    from hepsafe.report.figures import write_figures

    t_start = time.perf_counter()
    target = cfg.output
    with output_dir(target, force, run_inputs(cfg), f"hepsafe run {cfg.source}") as out, \
            Progress(quiet) as progress:
        tagger = cfg.tagger.build()
        for syst in cfg.systematics:  # attacks are built (and their options checked) first
            for _, shift in syst.shifts():
                with _named(cfg, syst):
                    prepare = getattr(shift, "prepare", None)
                    if callable(prepare):
                        prepare(tagger)
        with progress.step("reading samples", len(cfg.samples)) as adv:
            samples = load_samples(cfg)
            adv(len(samples))
        control = samples[cfg.control]
        with progress.step("nominal inference", len(samples)) as adv:
            nominal = {}
            for name, s in samples.items():
                nominal[name] = tagger.predict(s.jets)
                adv(1)
        varied: list[Varied] = []
        for description, group in _steps(cfg.systematics):
            n_shifts = sum(len(syst.shifts()) for syst in group)
            with progress.step(description, max(n_shifts, 1) * len(samples)) as adv:
                for syst in group:
                    for direction, shift in syst.shifts():
                        varied.append(_vary(cfg, syst, direction, shift, samples, tagger, adv))

        # metrics at the working point of the first signal sample, set on its nominal jets
        # in the region
        selected = region_masks(cfg.region, {n: s.jets for n, s in samples.items()})
        thr, summary = summary_table(samples, nominal, selected, varied, cfg.working_point)

        # gate on the control sample, for every variation and attack (the calibrated gate
        # also tests the fraction of control jets above the working point)
        gates: dict[str, Any] = {}
        gate_reports: dict[str, validate.GateReport] = {}
        with progress.step("control-region gate", max(len(varied), 1)) as adv:
            for v in varied:
                rep = validate.gate(
                    control.jets, v.jets[control.name], nominal[control.name],
                    v.scores[control.name], config=cfg.gate, threshold=thr,
                )
                gate_reports[v.key] = rep
                gates[v.key] = rep.to_dict()
                adv(1)

        for row in summary[1:]:
            rep = gate_reports[row["name"]]
            row["gate"] = "pass" if rep.passed else "FAIL"
            row["gate_failed"] = list(rep.failed_variables)
        summary[0]["gate"] = "-"

        # templates and fit: each variation's jets in the region (its own selection)
        in_sr = {n: replace(s, jets=s.jets[selected[n]]) for n, s in samples.items()}
        nominal_sr = {n: nominal[n][selected[n]] for n in samples}
        varied_sr = [v.in_region() for v in varied]
        with progress.step("templates and pyhf fit", 2) as adv:
            h = T.book(cfg.observable.edges(), observable="score", label=f"{tagger.name} score")
            for name in samples:
                h = T.fill(h, nominal_sr[name], name, NOMINAL,
                           weight=in_sr[name].jets.weight, clip=True)
                for v in varied_sr:
                    h = T.fill(h, v.scores[name], name, T.variation_name(v.name, v.direction),
                               weight=v.jets[name].weight, clip=True)
            templates = T.Templates({REGION: h})
            if cfg.fit.workspace.control_region is not None:
                templates = control_channel(templates, cfg, control, nominal, varied)
            templates_io.write_templates(templates, out / "templates.root")
            templates_io.write_templates(templates, out / "templates.json")
            adv(1)
            failed = gate_failures(varied, gate_reports)
            fitted, fit_note = fit_run(templates, cfg, failed=failed)
            if fitted is not None:
                stats.write_fit_outputs(fitted, out)
            adv(1)
        fit_report = fitted.report if fitted is not None else {}

        write_json(out / "gate.json", gates)
        write_json(out / "summary.json", summary)
        with progress.step("plots and report", 1) as adv:
            figures = write_figures(
                out, samples, nominal, varied, gate_reports, fit_report, thr, control.name,
                region=(in_sr, nominal_sr, varied_sr) if cfg.region.cuts else None,
            )
            provenance = make_provenance(cfg, samples, tagger, cfg.seed)
            provenance["seconds"] = {v.key: round(v.seconds, 2) for v in varied}
            write_json(out / "provenance.json", provenance)
            report.write_reports(out, cfg, summary, gate_reports, fit_report, figures,
                                 provenance, fit_note=fit_note)
            adv(1)
        files = sorted(p.name for p in out.iterdir())
    elapsed = time.perf_counter() - t_start
    log.info("run finished in %.1f s: %s", elapsed, target)
    result = RunResult(target, summary, gates, fit_report, files)
    if fitted is None and not cfg.fit.skip:
        raise FitFailed(f"{cfg.source}: {fit_note} (every other output is in {target}; "
                        "remedies: docs/RUN.md, section fit)", result)
    if strict_gate and any(r.get("gate") == "FAIL" for r in summary):
        failing = [r["name"] for r in summary if r.get("gate") == "FAIL"]
        raise GateFailed(f"control-region gate failed for {failing} (see {target}/gate.json)",
                         result)
    return result


def workspace_config(
    cfg: RunConfig, signal: tuple[str, ...] | None = None
) -> workspace.WorkspaceConfig:
    """How the run's templates become a pyhf model (``cfg.fit.workspace``): the POI scales
    the ``signal`` samples (None: the configuration's), ``fit/lumi_uncertainty`` (0: none),
    ``fit/missing_side``, ``fit/merge_empty_bins``."""
    wcfg = cfg.fit.workspace
    return wcfg if signal is None else replace(wcfg, signal=tuple(signal))


def control_channel(templates: T.Templates, cfg: RunConfig, control: Sample,
                    nominal: Mapping[str, np.ndarray], varied: Sequence[Varied]) -> T.Templates:
    """``templates`` with the control region as a channel (``fit/control_region``): the
    control sample's jets (all of them, not only those in the signal region's cuts), nominal
    and under every variation and attack, booked jointly in score / jet pT / jet mass."""
    from hepsafe.templates import control as cr

    crc = cfg.fit.workspace.control_region
    assert crc is not None
    name = control.name

    def values(jets: JetBatch, scores: np.ndarray) -> dict[str, np.ndarray]:
        return {"score": scores, "jet_pt": jets.pt, "jet_mass": jets.mass}

    by_side = {T.variation_name(v.name, v.direction): v for v in varied}
    booked = cr.book_control(
        values(control.jets, nominal[name]),
        {k: values(v.jets[name], v.scores[name]) for k, v in by_side.items()},
        control.jets.weight, crc, name,
        varied_weights={k: v.jets[name].weight for k, v in by_side.items()})
    return cr.combine(templates, booked)


def gate_failures(
    varied: Sequence[Varied], reports: Mapping[str, validate.GateReport]
) -> dict[str, list[str]]:
    """``{attack: failed checks}`` for every attack that fails the control-region gate (the
    failed control variables, in order). Physics variations are not listed: they are
    uncertainties with a prior width, which the control-region data may constrain, not
    hidden mismodellings, so they always enter the fit."""
    out: dict[str, list[str]] = {}
    for v in varied:
        rep = reports[v.key]
        if v.kind == "attack" and not rep.passed:
            checks = out.setdefault(v.name, [])
            checks += [c for c in rep.failed_variables if c not in checks]
    return out


def fit_run(
    templates: T.Templates, cfg: RunConfig, signal: tuple[str, ...] | None = None,
    failed: Mapping[str, Sequence[str]] | None = None,
) -> tuple[stats.FitOutputs | None, str]:
    """The run's fit of ``templates`` as configured under ``fit``: (outputs, "") when done,
    (None, why) when skipped or impossible (empty background bins, ...).

    The fitted workspace is the nominal-only workspace (the user-side view) with the patch
    adding every variation and attack; the data are the Asimov data set at mu = 1.
    One-sided variations are declared so by the configuration, so mirroring them is silent.
    ``failed``: ``{systematic: failed checks}`` of the control-region gate; those are left
    out of the fit unless ``fit/include_failed`` (the report lists them either way).
    """
    if cfg.fit.skip:
        return None, "skipped (fit: {skip: true})"
    wcfg = workspace_config(cfg, signal)
    failed = {k: list(v) for k, v in (failed or {}).items()}
    if failed and not cfg.fit.include_failed:
        kept = [n for n in templates.systematics() if n not in failed]
        templates = hygiene.select_systematics(templates, kept)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MirrorWarning)
            if not templates.systematics():  # every one left out: the nominal-only fit
                out = stats.fit_templates(templates, wcfg, asimov=True)
            else:
                base = workspace.build_workspace(hygiene.select_systematics(templates, []),
                                                 wcfg)
                out = stats.fit_templates(templates, wcfg, user_workspace=base, asimov=True)
    except (FitError, TemplateError, WorkspaceError) as exc:
        return None, str(exc)
    out.report["left_out"] = {} if cfg.fit.include_failed else failed
    out.report["included_failed"] = sorted(failed) if cfg.fit.include_failed else []
    return replace(out, text=stats.format_report(out.report)), ""


def make_provenance(
    cfg: RunConfig, samples: dict[str, Sample], tagger: OnnxTagger, seed: int
) -> dict[str, Any]:
    """hepsafe version, input checksums, model and card hashes, the config, the seed."""
    from hepsafe import __version__

    files = sorted({f for s in samples.values() for f in s.files})
    card_bytes = json.dumps(tagger.card, sort_keys=True).encode()
    import hashlib

    return {
        "hepsafe": __version__,
        "seed": seed,
        "config": cfg.raw,
        "config_source": cfg.source,
        "inputs": {f: sha256sum(f) for f in files},
        "tagger": {
            "path": str(tagger.path),
            "sha256": sha256sum(tagger.path),
            "card_sha256": hashlib.sha256(card_bytes).hexdigest(),
            "provider": tagger.provider,
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
