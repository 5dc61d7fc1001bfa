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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

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
    MirrorWarning,
    TemplateError,
    WorkspaceError,
)
from hepsafe.fit import results as stats
from hepsafe.fit import workspace as workspace
from hepsafe.perturbation import variations as V
from hepsafe.perturbation.envelope import Envelope
from hepsafe.pipeline.config import RunConfig
from hepsafe.pipeline.summary import summary_table
from hepsafe.tagger.onnx import OnnxTagger
from hepsafe.templates import booking as T
from hepsafe.templates import files as templates_io
from hepsafe.templates import hygiene as hygiene

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
    """One variation or attack: its name, kind, and per-sample varied jets and scores."""

    name: str
    kind: str  # "variation" or "attack"
    direction: str  # "up", "down" (two-sided variations) or "up" alone (one-sided)
    jets: dict[str, JetBatch]
    scores: dict[str, np.ndarray]
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
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
    def step(self, description: str, total: int = 1) -> Iterator[Callable[[int], None]]:
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
def load_samples(cfg: RunConfig) -> dict[str, Sample]:
    """Read every configured sample (format, label, split, max_jets, weight scale), each
    file in chunks of ``read/step_size`` entries (:func:`hepsafe.data.reading.sample_jets`)."""
    from hepsafe.data.reading import sample_jets

    return {s["name"]: Sample(s["name"], s["role"], sample_jets(cfg, i), list(s["files"]))
            for i, s in enumerate(cfg["samples"])}


def make_envelope(cfg: RunConfig) -> Envelope:
    """The envelope of the run: from ``envelope/file`` or the uniform bounds given."""
    e = cfg["envelope"]
    if "file" in e:
        return Envelope.from_json(e["file"])
    return Envelope(pt=e["pt"], eta=e["eta"], phi=e["phi"])


def make_attack(entry: dict[str, Any], tagger: OnnxTagger, envelope: Envelope, seed: int) -> Any:
    """The attack object for a config entry (``type`` and its options).

    ``epsilon`` replaces the run's envelope by a uniform one of that size. The learned
    adversary is loaded from ``model`` (an ONNX graph + card written by
    ``examples/train_adversary.py``); with the shipped PFN and no ``model``, the shipped
    adversary ``hepsafe/models/adversary_pfn.onnx`` is used.
    """
    from hepsafe.attacks.registry import make_attack as factory

    env = Envelope.uniform(entry["epsilon"]) if "epsilon" in entry else envelope
    if entry["type"] == "learned":
        from hepsafe.attacks.adversary.training import LearnedAdversary
        from hepsafe.models import model_path

        unknown = sorted(set(entry) - {"type", "name", "epsilon", "target", "model", "seed"})
        if unknown:
            raise ConfigError(f"attack 'learned': unknown option(s) {unknown}; known: "
                              "['epsilon', 'target', 'model'] (the network is trained)")

        model = entry.get("model")
        if model is None:
            if Path(tagger.path).resolve() != model_path("pfn").resolve():
                raise ConfigError(
                    "the learned adversary needs 'model', an adversary trained against this "
                    "tagger (examples/train_adversary.py)"
                )
            model = str(model_path("adversary_pfn"))
        return LearnedAdversary.load(model, tagger, env if "epsilon" in entry else None)
    opts = {k: v for k, v in entry.items()
            if k not in ("type", "name", "epsilon", "target", "model", "seed")}
    return factory(entry["type"], tagger, env, seed=int(entry.get("seed", seed)), **opts)


# --------------------------------------------------------------------------- output dir
def run_inputs(cfg: RunConfig) -> list[Path]:
    """Every input file of the run: the configuration file, the samples, the tagger and its
    card, the envelope file, the attacks' models and cards (the output directory may be none
    of them nor contain any)."""
    from hepsafe.models import model_path
    from hepsafe.tagger.card import card_path

    paths: list[str | Path] = [cfg.source] if Path(cfg.source).is_file() else []
    paths += [f for s in cfg["samples"] for f in s["files"]]
    tg = cfg["tagger"]
    paths += [tg["model"], tg.get("card") or card_path(tg["model"])]
    if "file" in cfg["envelope"]:
        paths.append(cfg["envelope"]["file"])
    for entry in cfg["attacks"]:
        model = entry.get("model")
        if model is None and entry["type"] == "learned":
            model = model_path("adversary_pfn")
        if model is not None:
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


def run(
    cfg: RunConfig, force: bool = False, quiet: bool = False, strict_gate: bool = False
) -> RunResult:
    """Run the whole chain for ``cfg``; write the output directory; return a summary.

    The output directory is checked and locked before any work. When the fit cannot be done
    (e.g. an empty background bin), every other output is still written and
    :class:`FitFailed` is raised after it is in place.
    """
    from hepsafe.report import markdown as report
    from hepsafe.report import plots as plots

    t_start = time.perf_counter()
    seed = int(cfg["seed"])
    target = cfg.output
    with output_dir(target, force, run_inputs(cfg), f"hepsafe run {cfg.source}") as out, \
            Progress(quiet) as progress:
        tg = cfg["tagger"]
        tagger = OnnxTagger(
            tg["model"], card=tg.get("card"), providers=tg.get("providers", "auto"),
            **({"batch_size": tg["batch_size"]} if "batch_size" in tg else {}),
        )
        envelope = make_envelope(cfg)
        region = Region.from_dict(cfg["region"])
        sides = {e["name"]: V.configured_sides(e) for e in cfg["variations"]}  # checked
        attacks = []
        for i, entry in enumerate(cfg["attacks"]):
            try:
                attacks.append((entry, make_attack(entry, tagger, envelope, seed)))
            except ConfigError as exc:
                raise ConfigError(f"{cfg.source}: key 'attacks/{i}' ('{entry['name']}'): "
                                  f"{exc}") from exc
        with progress.step("reading samples", len(cfg["samples"])) as adv:
            samples = load_samples(cfg)
            adv(len(samples))
        sig = [s for s in samples.values() if s.role == "signal"]
        control = samples[cfg["control"]]
        with progress.step("nominal inference", len(samples)) as adv:
            nominal = {}
            for name, s in samples.items():
                nominal[name] = tagger.predict(s.jets)
                adv(1)
        varied: list[Varied] = []
        n_var = sum(len(v) for v in sides.values())
        with progress.step("physics variations", max(n_var, 1) * len(samples)) as adv:
            for i, entry in enumerate(cfg["variations"]):
                for direction, reg, options in sides[entry["name"]]:
                    t0 = time.perf_counter()
                    jets, scores = {}, {}
                    for name, s in samples.items():
                        try:
                            jets[name] = V.apply_variation(reg, s.jets, seed=seed, **options)
                        except ConfigError as exc:
                            raise ConfigError(f"{cfg.source}: key 'variations/{i}' "
                                              f"('{entry['name']}'): {exc}") from exc
                        scores[name] = tagger.predict(jets[name])
                        adv(1)
                    varied.append(Varied(entry["name"], "variation", direction, jets, scores,
                                         time.perf_counter() - t0,
                                         {"registry": reg, **options},
                                         region_masks(region, jets)))
        for entry, attack in attacks:
            with progress.step(f"attack {entry['name']}", len(samples)) as adv:
                t0 = time.perf_counter()
                jets, scores = {}, {}
                for name, s in samples.items():
                    jets[name] = attack(s.jets, entry.get("target", "down")).jets
                    scores[name] = tagger.predict(jets[name])
                    adv(1)
                info = dict(attack.last_info.details) if attack.last_info else {}
                varied.append(Varied(entry["name"], "attack", "up", jets, scores,
                                     time.perf_counter() - t0, info,
                                     region_masks(region, jets)))

        # gate on the control sample, for every variation and attack
        gate_cfg = validate.GateConfig.from_dict(cfg["gate"]) if cfg["gate"] else None
        gates: dict[str, Any] = {}
        gate_reports: dict[str, validate.GateReport] = {}
        with progress.step("control-region gate", max(len(varied), 1)) as adv:
            for v in varied:
                rep = validate.gate(
                    control.jets, v.jets[control.name], nominal[control.name],
                    v.scores[control.name], config=gate_cfg,
                )
                gate_reports[v.key] = rep
                gates[v.key] = rep.to_dict()
                adv(1)

        # metrics at the working point of the first signal sample, set on its nominal jets
        # in the region
        selected = region_masks(region, {n: s.jets for n, s in samples.items()})
        thr, summary = summary_table(samples, nominal, selected, varied,
                                     float(cfg["working_point"]["signal_efficiency"]))
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
            lo, hi = cfg["observable"]["range"]
            edges = np.linspace(lo, hi, int(cfg["observable"]["bins"]) + 1)
            h = T.book(edges, observable="score", label=f"{tagger.name} score")
            for name in samples:
                h = T.fill(h, nominal_sr[name], name, NOMINAL,
                           weight=in_sr[name].jets.weight, clip=True)
                for v in varied_sr:
                    h = T.fill(h, v.scores[name], name, T.variation_name(v.name, v.direction),
                               weight=v.jets[name].weight, clip=True)
            templates = T.Templates({REGION: h})
            templates_io.write_templates(templates, out / "templates.root")
            templates_io.write_templates(templates, out / "templates.json")
            adv(1)
            fitted, fit_note = fit_run(templates, cfg, tuple(s.name for s in sig))
            if fitted is not None:
                stats.write_fit_outputs(fitted, out)
            adv(1)
        fit_report = fitted.report if fitted is not None else {}

        write_json(out / "gate.json", gates)
        write_json(out / "summary.json", summary)
        with progress.step("plots and report", 1) as adv:
            figures = plots.make_all(
                out, samples, nominal, varied, gate_reports, fit_report, thr, control.name,
                region=(in_sr, nominal_sr, varied_sr) if region.cuts else None,
            )
            provenance = make_provenance(cfg, samples, tagger, seed)
            provenance["seconds"] = {v.key: round(v.seconds, 2) for v in varied}
            write_json(out / "provenance.json", provenance)
            report.write_reports(out, cfg, summary, gate_reports, fit_report, figures,
                                 provenance, fit_note=fit_note)
            adv(1)
        files = sorted(p.name for p in out.iterdir())
    elapsed = time.perf_counter() - t_start
    log.info("run finished in %.1f s: %s", elapsed, target)
    result = RunResult(target, summary, gates, fit_report, files)
    if fitted is None and not cfg["fit"]["skip"]:
        raise FitFailed(f"{cfg.source}: {fit_note} (every other output is in {target}; "
                        "remedies: docs/RUN.md, section fit)", result)
    if strict_gate and any(r.get("gate") == "FAIL" for r in summary):
        failed = [r["name"] for r in summary if r.get("gate") == "FAIL"]
        raise GateFailed(f"control-region gate failed for {failed} (see {target}/gate.json)",
                         result)
    return result


def workspace_config(cfg: RunConfig, signal: tuple[str, ...]) -> workspace.WorkspaceConfig:
    """How the run's templates become a pyhf model: the POI scales the ``signal`` samples;
    ``fit/lumi_uncertainty`` (0: none), ``fit/missing_side``, ``fit/merge_empty_bins``."""
    fc = cfg["fit"]
    return workspace.WorkspaceConfig(
        signal=signal, lumi=float(fc["lumi_uncertainty"]) or None,
        missing_side=fc["missing_side"], merge_empty_bins=bool(fc["merge_empty_bins"]),
    )


def fit_run(
    templates: T.Templates, cfg: RunConfig, signal: tuple[str, ...]
) -> tuple[stats.FitOutputs | None, str]:
    """The run's fit of ``templates`` as configured under ``fit``: (outputs, "") when done,
    (None, why) when skipped or impossible (empty background bins, ...).

    The fitted workspace is the nominal-only workspace (the user-side view) with the patch
    adding every variation and attack; the data are the Asimov data set at mu = 1.
    One-sided variations are declared so by the configuration, so mirroring them is silent.
    """
    if cfg["fit"]["skip"]:
        return None, "skipped (fit: {skip: true})"
    wcfg = workspace_config(cfg, signal)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MirrorWarning)
            base = workspace.build_workspace(hygiene.select_systematics(templates, []), wcfg)
            return stats.fit_templates(templates, wcfg, user_workspace=base, asimov=True), ""
    except (FitError, TemplateError, WorkspaceError) as exc:
        return None, str(exc)


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
