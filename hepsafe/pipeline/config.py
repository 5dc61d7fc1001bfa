"""Run configuration: a YAML file validated against ``schemas/run.schema.json`` and parsed
once into a typed :class:`RunConfig`.

Every error is one line that names the key (as a path such as ``samples/1/files``) or the
file at fault, and says what was expected.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from hepsafe import _schemas as schemas
from hepsafe.attacks.base import LABEL_TARGETS
from hepsafe.data.regions import Region
from hepsafe.data.sample import DATA_DIR
from hepsafe.exceptions import ConfigError, TemplateError
from hepsafe.fit.workspace import WorkspaceConfig
from hepsafe.models import model_path
from hepsafe.perturbation.envelope import Envelope
from hepsafe.perturbation.shifts import PhysicsShift, Systematic, attack_systematic
from hepsafe.perturbation.variations import configured_sides
from hepsafe.pipeline.spec import FitSpec, Observable, ReadOptions, SampleSpec, TaggerSpec
from hepsafe.templates.control import ControlRegionConfig
from hepsafe.validation.config import GateConfig

#: the tree read from each input file, per format (key 'tree' overrides it)
TREES = {"hepsafe": "jets", "pfnano": "Events"}

DEFAULTS: dict[str, Any] = {
    "seed": 1,
    "format": "hepsafe",
    "collection": "FatJet",
    "puppi": None,
    "envelope": {"pt": 0.02, "eta": 0.02, "phi": 0.02},
    "variations": [],
    "attacks": [],
    "region": {},
    "working_point": {"signal_efficiency": 0.5},
    "observable": {"bins": 10, "range": [0.0, 1.0]},
    "gate": {},
    "read": {"step_size": 20_000},
    "fit": {"lumi_uncertainty": 0.0, "missing_side": "mirror", "merge_empty_bins": False,
            "skip": False, "include_failed": False, "treatment": {}, "control_region": None},
}

#: keys of an ``attacks`` entry that are not options of the attack itself
_ATTACK_KEYS = ("type", "name", "epsilon", "target", "model", "seed")
#: the target of an attack without one (the learned adversary: the direction it was
#: trained for): signal jets pushed down and background jets up, the analysis' worst case
DEFAULT_TARGET = "signal_down_background_up"


@dataclass(frozen=True)
class RunConfig:
    """A validated run configuration, parsed once into the types the run reads.

    ``raw``: the dict with defaults filled in, input paths resolved relative to the config
    file's directory and ``output`` relative to the working directory; it is recorded in
    ``provenance.json`` (``cfg[key]`` reads it). ``source``: the file (or a label).
    ``systematics``: the variations, then the attacks, in file order;
    ``systematic_keys``: the key of each (name -> ``variations/0``, ``attacks/1``);
    ``attack_models``: the files the attacks read (learned adversaries).
    ``working_point``: the signal efficiency setting the score threshold, in (0, 1).
    """

    raw: dict[str, Any]
    source: str
    output: Path
    seed: int
    tagger: TaggerSpec
    envelope: Envelope
    envelope_file: Path | None
    region: Region
    samples: tuple[SampleSpec, ...]
    control: str
    read: ReadOptions
    systematics: tuple[Systematic, ...]
    systematic_keys: Mapping[str, str]
    attack_models: tuple[Path, ...]
    gate: GateConfig
    fit: FitSpec
    observable: Observable
    working_point: float

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    @property
    def signal(self) -> tuple[str, ...]:
        """Names of the signal samples, in file order."""
        return tuple(s.name for s in self.samples if s.role == "signal")

    def key_of(self, name: str) -> str:
        """The configuration key of systematic ``name`` (``variations/0``, ``attacks/1``)."""
        return self.systematic_keys[name]

    def with_output(self, output: str | os.PathLike[str]) -> RunConfig:
        """The same configuration writing to ``output`` (``raw`` records it too)."""
        return replace(self, output=Path(output), raw={**self.raw, "output": str(output)})


def _resolve(path: str, base: Path) -> str:
    p = Path(os.path.expanduser(path))
    return str(p if p.is_absolute() else (base / p))


def resolve_model(model: str, base: Path) -> Path:
    """A model path: a shipped model name (``pfn``, ``hl``, ``adversary_pfn``) or a file
    relative to ``base``."""
    p = model_path(model)
    return p if p.is_absolute() else base / p


def from_dict(raw: dict[str, Any], source: str = "config", base: Path | None = None) -> RunConfig:
    """Validate a configuration dict, fill defaults, check files and cross-references, and
    build the typed :class:`RunConfig`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(raw).__name__}")
    schemas.validate(raw, "run", what=source)
    base = base or Path.cwd()
    cfg = copy.deepcopy(DEFAULTS)
    for key, value in copy.deepcopy(raw).items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    cfg.setdefault("tree", TREES[cfg["format"]])
    if cfg["puppi"] is None:  # AK8 FatJet in PFNano is PUPPI: weighted unless told otherwise
        cfg["puppi"] = cfg["format"] == "pfnano" and cfg["collection"] == "FatJet"
    names = [s["name"] for s in cfg["samples"]]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"{source}: key 'samples': duplicate sample name(s) {sorted(dup)}")
    roles = {s["role"] for s in cfg["samples"]}
    for role in ("signal", "background"):
        if role not in roles:
            raise ConfigError(f"{source}: key 'samples': no sample with role '{role}'")
    for i, s in enumerate(cfg["samples"]):
        if cfg["format"] == "pfnano" and s.get("label", -1) != -1:
            raise ConfigError(f"{source}: key 'samples/{i}/label': PFNano jets carry no truth "
                              "label (all -1); drop 'label' and give each sample its own files")
        s["files"] = [_resolve(f, base) for f in s["files"]]
        for j, f in enumerate(s["files"]):
            if not Path(f).exists():
                raise ConfigError(f"{source}: key 'samples/{i}/files/{j}': no such file {f}")
    control = cfg.setdefault(
        "control", next(s["name"] for s in cfg["samples"] if s["role"] == "background")
    )
    if control not in names:
        raise ConfigError(f"{source}: key 'control': '{control}' is not a sample name {names}")
    model = resolve_model(cfg["tagger"]["model"], base)
    if not model.exists():
        raise ConfigError(f"{source}: key 'tagger/model': no such file {model}")
    cfg["tagger"]["model"] = str(model)
    if "card" in cfg["tagger"]:
        card = Path(_resolve(cfg["tagger"]["card"], base))
        if not card.exists():
            raise ConfigError(f"{source}: key 'tagger/card': no such file {card}")
        cfg["tagger"]["card"] = str(card)
    if "file" in cfg["envelope"]:
        env = Path(_resolve(cfg["envelope"]["file"], base))
        if not env.exists():
            raise ConfigError(f"{source}: key 'envelope/file': no such file {env}")
        cfg["envelope"]["file"] = str(env)
    lo, hi = cfg["observable"]["range"]
    if not lo < hi:
        raise ConfigError(f"{source}: key 'observable/range': need low < high, got [{lo}, {hi}]")
    try:
        region = Region.from_dict(cfg["region"])
    except ConfigError as exc:
        raise ConfigError(f"{source}: key 'region': {exc}") from exc
    if "jet_msoftdrop" in cfg["region"] and cfg["format"] != "pfnano":
        raise ConfigError(f"{source}: key 'region/jet_msoftdrop': format '{cfg['format']}' "
                          "carries no soft-drop mass (expected format pfnano with "
                          f"{cfg['collection']}_msoftdrop)")
    for i, item in enumerate(cfg["attacks"]):
        if "model" in item:
            m = resolve_model(item["model"], base)
            if not m.exists():
                raise ConfigError(f"{source}: key 'attacks/{i}/model': no such file {m}")
            item["model"] = str(m)
    seen: set[str] = set()
    for key in ("variations", "attacks"):
        for i, item in enumerate(cfg[key]):
            name = item.setdefault("name", item["type"])
            if name in seen:
                raise ConfigError(
                    f"{source}: key '{key}/{i}/name': '{name}' is used twice; give each a name"
                )
            seen.add(name)
    envelope = _envelope(cfg["envelope"])
    systematics = _variations(cfg, source) + _attacks(cfg, envelope)
    gate = _gate(cfg, source)
    fit = _fit(cfg, raw.get("fit", {}), systematics, source)
    crc = fit.workspace.control_region
    if crc is not None and crc.events is not None and "control_events" not in cfg["gate"]:
        # the gate and the control channel assume the same control-region size
        gate = replace(gate, control_events=float(crc.events))
    cfg["output"] = _resolve(cfg["output"], Path.cwd())
    return _typed(cfg, source, envelope, region, systematics, gate, fit)


def _typed(cfg: dict[str, Any], source: str, envelope: Envelope, region: Region,
           systematics: tuple[Systematic, ...], gate: GateConfig, fit: FitSpec) -> RunConfig:
    """The :class:`RunConfig` of a checked, completed configuration dict ``cfg``."""
    tg = cfg["tagger"]
    tagger = TaggerSpec(Path(tg["model"]), Path(tg["card"]) if "card" in tg else None,
                        tg.get("providers", "auto"), tg.get("batch_size"))
    samples = tuple(SampleSpec(s["name"], s["role"], tuple(s["files"]), s.get("label"),
                               s.get("split", "all"), s.get("max_jets"), s.get("scale"))
                    for s in cfg["samples"])
    read = ReadOptions(cfg["format"], cfg["tree"], cfg["collection"], bool(cfg["puppi"]),
                       int(cfg["read"]["step_size"]))
    keys = {item["name"]: f"{key}/{i}" for key in ("variations", "attacks")
            for i, item in enumerate(cfg[key])}
    models = tuple(Path(a["model"]) if "model" in a else model_path("adversary_pfn")
                   for a in cfg["attacks"] if "model" in a or a["type"] == "learned")
    lo, hi = cfg["observable"]["range"]
    observable = Observable(int(cfg["observable"]["bins"]), float(lo), float(hi))
    env_file = Path(cfg["envelope"]["file"]) if "file" in cfg["envelope"] else None
    return RunConfig(
        raw=cfg, source=source, output=Path(cfg["output"]), seed=int(cfg["seed"]),
        tagger=tagger, envelope=envelope, envelope_file=env_file, region=region,
        samples=samples, control=cfg["control"], read=read, systematics=systematics,
        systematic_keys=keys, attack_models=models, gate=gate, fit=fit,
        observable=observable,
        working_point=float(cfg["working_point"]["signal_efficiency"]),
    )


def _envelope(e: Mapping[str, Any]) -> Envelope:
    """The run's envelope: from ``envelope/file`` or the uniform bounds given."""
    if "file" in e:
        return Envelope.from_json(e["file"])
    return Envelope(pt=e["pt"], eta=e["eta"], phi=e["phi"])


def _variations(cfg: dict[str, Any], source: str) -> tuple[Systematic, ...]:
    """Each ``variations`` entry as a physics :class:`Systematic` (its type and options
    checked; two-sided types give up and down), seeded with the run's seed; at least one
    variation or attack."""
    from hepsafe.templates.booking import check_name

    if not cfg["variations"] and not cfg["attacks"]:
        raise ConfigError(f"{source}: keys 'variations' and 'attacks' are both empty: give at "
                          "least one (each becomes a nuisance parameter of the fit)")
    out = []
    for i, item in enumerate(cfg["variations"]):
        try:
            check_name(item["name"], "variation")
            shifts = [PhysicsShift(reg, int(cfg["seed"]), opts)
                      for _, reg, opts in configured_sides(copy.deepcopy(item))]
            out.append(Systematic(item["name"], shifts[0],
                                  shifts[1] if len(shifts) > 1 else None))
        except (ConfigError, TemplateError) as exc:
            raise ConfigError(f"{source}: key 'variations/{i}': {exc}") from exc
    return tuple(out)


def _attacks(cfg: dict[str, Any], envelope: Envelope) -> tuple[Systematic, ...]:
    """Each ``attacks`` entry as a one-sided attack :class:`Systematic`. ``epsilon``
    replaces the run's envelope by a uniform one of that size (the learned adversary keeps
    the one it was trained in otherwise); ``seed`` defaults to the run's (not for the
    learned adversary, which is trained); ``model`` is the learned adversary's file. The
    other keys are the attack's options, checked when the run builds it."""
    out = []
    for item in cfg["attacks"]:
        kind = item["type"]
        options = copy.deepcopy({k: v for k, v in item.items() if k not in _ATTACK_KEYS})
        if kind == "learned":
            options.update({"model": item["model"]} if "model" in item else {})
            default = None
        else:
            options["seed"] = int(item.get("seed", cfg["seed"]))
            default = envelope
        env = Envelope.uniform(item["epsilon"]) if "epsilon" in item else default
        target = item.get("target", "down" if kind == "learned" else DEFAULT_TARGET)
        labels = sorted({s["label"] for s in cfg["samples"]
                         if s["role"] == "signal" and s.get("label") is not None})
        if target in LABEL_TARGETS and labels and "signal_labels" not in options:
            options["signal_labels"] = labels  # the signal samples' labels
        out.append(attack_systematic(item["name"], kind, target, env, **options))
    return tuple(out)


def _gate(cfg: dict[str, Any], source: str) -> GateConfig:
    """The gate settings, checked when the file is loaded, before any sample is read."""
    try:
        return GateConfig.from_dict(copy.deepcopy(cfg["gate"]))
    except ConfigError as exc:
        raise ConfigError(f"{source}: key 'gate': {exc}") from exc


def _fit(cfg: dict[str, Any], given: Any, systematics: tuple[Systematic, ...],
         source: str) -> FitSpec:
    """``fit/symmetrize`` (the older key) folded into ``fit/missing_side``; the treatment
    per variation (attacks: adversarial unless ``fit/treatment`` says otherwise); ``refuse``
    with one-sided gaussian entries is an error here, before any work."""
    fit = cfg["fit"]
    if "symmetrize" in fit:
        side = "mirror" if fit.pop("symmetrize") else "nominal"
        if isinstance(given, dict) and given.get("missing_side", side) != side:
            raise ConfigError(f"{source}: keys 'fit/symmetrize' and 'fit/missing_side' "
                              "disagree; give 'fit/missing_side' alone")
        fit["missing_side"] = side
    names = [s.name for s in systematics]
    unknown = [n for n in fit["treatment"] if n not in names]
    if unknown:
        raise ConfigError(f"{source}: key 'fit/treatment' names {unknown}, which are not "
                          f"variations or attacks of this run (have {names})")
    # attacks default to the adversarial treatment, physics variations to the gaussian one
    treatment = {s.name: "adversarial" if s.kind == "attack" else "gaussian"
                 for s in systematics}
    treatment.update({k: v["name"] if isinstance(v, dict) else v
                      for k, v in fit["treatment"].items()})
    if fit["missing_side"] == "refuse":
        one = [s.name for s in systematics if treatment[s.name] == "gaussian"
               and (s.kind == "attack" or s.down is None)]
        if one:
            raise ConfigError(f"{source}: key 'fit/missing_side': 'refuse', but {one} are "
                              "one-sided with the gaussian treatment; use 'mirror' or "
                              "'nominal', or the adversarial treatment")
    signal = tuple(s["name"] for s in cfg["samples"] if s["role"] == "signal")
    control_region = None
    if fit["control_region"] is not None:
        try:
            control_region = ControlRegionConfig.from_dict(fit["control_region"])
        except TemplateError as exc:
            key, _, msg = str(exc).partition(": ")
            raise ConfigError(f"{source}: key 'fit/{key}': {msg}") from exc
        if control_region.region == "SR":
            raise ConfigError(f"{source}: key 'fit/control_region/region': 'SR' is the signal "
                              "region's name; choose another")
    workspace = WorkspaceConfig(
        signal=signal, lumi=float(fit["lumi_uncertainty"]) or None,
        missing_side=fit["missing_side"], merge_empty_bins=bool(fit["merge_empty_bins"]),
        treatment={k: v for k, v in treatment.items() if v == "adversarial"},
        control_region=control_region,
    )
    return FitSpec(workspace, bool(fit["skip"]), bool(fit["include_failed"]))


DEMO_CONFIG = DATA_DIR / "demo.yaml"


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int, first: int) -> None:
        super().__init__(key, line, first)
        self.key, self.line, self.first = key, line, first


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the
    last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise _DuplicateKey(key, line, seen[key])
                seen[key] = line
            except TypeError:  # unhashable key: the base class reports it
                break
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                              _StrictLoader.construct_mapping)


def load(path: str | os.PathLike[str]) -> RunConfig:
    """Read and validate a YAML run configuration; relative paths are taken from its folder.

    A key given twice in one mapping is an error naming the key and both lines."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{path}: no such configuration file")
    try:
        raw = yaml.load(p.read_text(), Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
    except _DuplicateKey as exc:
        raise ConfigError(f"{path}: key '{exc.key}' is given twice (lines {exc.first} and "
                          f"{exc.line}); keep one") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from exc
    if raw is None:
        raise ConfigError(f"{path}: the file is empty")
    return from_dict(raw, source=str(path), base=p.parent.resolve())
