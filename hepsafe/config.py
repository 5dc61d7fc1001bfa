"""Run configuration: a YAML file validated against ``schemas/run.schema.json``.

Every error is one line that names the key (as a path such as ``samples/1/files``) or the
file at fault, and says what was expected.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import schemas
from .exceptions import ConfigError
from .regions import Region

MODELS_DIR = Path(__file__).parent / "models"

#: the tree read from each input file, per format (key 'tree' overrides it)
TREES = {"hepsafe": "jets", "pfnano": "Events"}

DEFAULTS: dict[str, Any] = {
    "seed": 1,
    "format": "hepsafe",
    "collection": "FatJet",
    "envelope": {"pt": 0.02, "eta": 0.02, "phi": 0.02},
    "variations": [],
    "attacks": [],
    "region": {},
    "working_point": {"signal_efficiency": 0.5},
    "observable": {"bins": 10, "range": [0.0, 1.0]},
    "gate": {},
    "fit": {"lumi_uncertainty": 0.0, "symmetrize": True},
}


@dataclass(frozen=True)
class RunConfig:
    """A validated run configuration; ``raw`` is the dict with defaults filled in, input
    paths resolved relative to the config file's directory and ``output`` relative to the
    working directory."""

    raw: dict[str, Any]
    source: str

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    @property
    def output(self) -> Path:
        """The output directory."""
        return Path(self.raw["output"])


def _resolve(path: str, base: Path) -> str:
    p = Path(os.path.expanduser(path))
    return str(p if p.is_absolute() else (base / p))


def resolve_model(model: str, base: Path) -> Path:
    """A tagger path: a shipped model name (``pfn``, ``hl``) or a file relative to ``base``."""
    shipped = MODELS_DIR / f"{model}.onnx"
    if "/" not in model and not model.endswith(".onnx") and shipped.exists():
        return shipped
    return Path(_resolve(model, base))


def from_dict(raw: dict[str, Any], source: str = "config", base: Path | None = None) -> RunConfig:
    """Validate a configuration dict, fill defaults, check files and cross-references."""
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
        Region.from_dict(cfg["region"])
    except ConfigError as exc:
        raise ConfigError(f"{source}: key 'region': {exc}") from exc
    for i, item in enumerate(cfg["attacks"]):
        if "model" in item:
            m = Path(_resolve(item["model"], base))
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
    _check_variations_and_gate(cfg, source)
    cfg["output"] = _resolve(cfg["output"], Path.cwd())
    return RunConfig(raw=cfg, source=source)


def _check_variations_and_gate(cfg: dict[str, Any], source: str) -> None:
    """Variation types, options and names, at least one nuisance parameter, and the gate
    settings: checked when the file is loaded, before any sample is read."""
    from .exceptions import TemplateError
    from .templates import check_name
    from .validate import GateConfig
    from .variations import configured_sides

    if not cfg["variations"] and not cfg["attacks"]:
        raise ConfigError(f"{source}: keys 'variations' and 'attacks' are both empty: give at "
                          "least one (each becomes a nuisance parameter of the fit)")
    for i, item in enumerate(cfg["variations"]):
        try:
            check_name(item["name"], "variation")
            configured_sides(item)
        except (ConfigError, TemplateError) as exc:
            raise ConfigError(f"{source}: key 'variations/{i}': {exc}") from exc
    try:
        GateConfig.from_dict(cfg["gate"])
    except ConfigError as exc:
        raise ConfigError(f"{source}: key 'gate': {exc}") from exc


DEMO_CONFIG = Path(__file__).parent / "data" / "demo.yaml"


def load(path: str | os.PathLike[str]) -> RunConfig:
    """Read and validate a YAML run configuration; relative paths are taken from its folder."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{path}: no such configuration file")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from exc
    if raw is None:
        raise ConfigError(f"{path}: the file is empty")
    return from_dict(raw, source=str(path), base=p.parent.resolve())
