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

from hepsafe import _schemas as schemas
from hepsafe.data.regions import Region
from hepsafe.data.sample import DATA_DIR
from hepsafe.exceptions import ConfigError
from hepsafe.models import model_path

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
            "skip": False},
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
    p = model_path(model)
    return p if p.is_absolute() else base / p


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
        Region.from_dict(cfg["region"])
    except ConfigError as exc:
        raise ConfigError(f"{source}: key 'region': {exc}") from exc
    if "jet_msoftdrop" in cfg["region"] and cfg["format"] != "pfnano":
        raise ConfigError(f"{source}: key 'region/jet_msoftdrop': format '{cfg['format']}' "
                          "carries no soft-drop mass (expected format pfnano with "
                          f"{cfg['collection']}_msoftdrop)")
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
    _check_fit(cfg, raw.get("fit", {}), source)
    cfg["output"] = _resolve(cfg["output"], Path.cwd())
    return RunConfig(raw=cfg, source=source)


def _check_variations_and_gate(cfg: dict[str, Any], source: str) -> None:
    """Variation types, options and names, at least one nuisance parameter, and the gate
    settings: checked when the file is loaded, before any sample is read."""
    from hepsafe.exceptions import TemplateError
    from hepsafe.perturbation.variations import configured_sides
    from hepsafe.templates.booking import check_name
    from hepsafe.validation.config import GateConfig

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


def _check_fit(cfg: dict[str, Any], given: Any, source: str) -> None:
    """``fit/symmetrize`` (the older key) folded into ``fit/missing_side``; ``refuse`` with
    one-sided entries (attacks always are) is an error here, before any work."""
    from hepsafe.perturbation.variations import configured_sides

    fit = cfg["fit"]
    if "symmetrize" in fit:
        side = "mirror" if fit.pop("symmetrize") else "nominal"
        if isinstance(given, dict) and given.get("missing_side", side) != side:
            raise ConfigError(f"{source}: keys 'fit/symmetrize' and 'fit/missing_side' "
                              "disagree; give 'fit/missing_side' alone")
        fit["missing_side"] = side
    if fit["missing_side"] != "refuse":
        return
    one = [e["name"] for e in cfg["attacks"]]
    one += [e["name"] for e in cfg["variations"] if len(configured_sides(e)) == 1]
    if one:
        raise ConfigError(f"{source}: key 'fit/missing_side': 'refuse', but {one} are "
                          "one-sided (every attack is); use 'mirror' or 'nominal'")


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
