"""The package's JSON schemas (``schemas/*.schema.json``), loaded and validated at the boundary."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema

from hepsafe.exceptions import ConfigError


def schema_dir() -> Path:
    """Directory holding the schemas: inside the installed package, or the source tree's."""
    here = Path(__file__).parent
    for cand in (here / "schemas", here.parent / "schemas"):
        if cand.is_dir():
            return cand
    raise FileNotFoundError("hepsafe schemas not found beside the package")


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """The schema ``<name>.schema.json`` as a dict (``name`` e.g. ``"dataset"``)."""
    path = schema_dir() / f"{name}.schema.json"
    if not path.exists():
        raise ConfigError(f"no schema named '{name}' ({path} does not exist)")
    return json.loads(path.read_text())


def validate(instance: Any, name: str, what: str = "document", error: type = ConfigError) -> None:
    """Validate ``instance`` against schema ``name``; raise ``error`` naming the key at fault."""
    schema = load_schema(name)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        key = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise error(f"{what}: key '{key}': {e.message}")
