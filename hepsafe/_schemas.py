"""The package's JSON schemas (``schemas/*.schema.json``), loaded and validated at the boundary.

The top-level ``schemas/`` directory is the source; the wheel ships it as ``hepsafe/schemas``
(``pyproject.toml``, ``force-include``), where :func:`schema_dir` finds it through
:mod:`importlib.resources`. An editable install has no copy inside the package and reads the
source tree's. A schema is loaded by name (``"tagger"`` for ``tagger.schema.json``) once,
and cached by its ``$id`` (``hepsafe/<name>.schema.json``); a document that does not match
raises one error type, naming the document and the key at fault.
"""

from __future__ import annotations

import json
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import jsonschema

from hepsafe.exceptions import ConfigError

SUFFIX = ".schema.json"
#: loaded schemas by ``$id``
SCHEMA_CACHE: dict[str, dict[str, Any]] = {}
_VALIDATORS: dict[str, jsonschema.Draft202012Validator] = {}


def schema_id(name: str) -> str:
    """The ``$id`` the schema ``name`` carries: ``hepsafe/<name>.schema.json``."""
    return f"hepsafe/{name}{SUFFIX}"


def schema_dir(package: str = "hepsafe") -> Traversable:
    """Directory holding the schemas: ``<package>/schemas`` when installed from a wheel, else
    the source tree's ``schemas/`` beside the package directory (editable install)."""
    root = resources.files(package)
    shipped = root.joinpath("schemas")
    if shipped.is_dir():
        return shipped
    if isinstance(root, Path) and (root.parent / "schemas").is_dir():
        return root.parent / "schemas"
    raise FileNotFoundError(f"{package} schemas not found (neither {shipped} nor the "
                            "source tree's schemas/)")


def read_schema(ref: Traversable, name: str) -> dict[str, Any]:
    """The schema file ``ref`` parsed, its ``$id`` checked to be :func:`schema_id` (``name``)."""
    if not ref.is_file():
        raise ConfigError(f"no schema named '{name}' ({ref} does not exist)")
    with ref.open("r", encoding="utf-8") as f:
        schema = json.load(f)
    got = schema.get("$id") if isinstance(schema, dict) else None
    if got != schema_id(name):
        raise ConfigError(f"schema {ref}: key '$id' is {got!r}, expected {schema_id(name)!r}")
    return schema


def load_schema(name: str) -> dict[str, Any]:
    """The schema ``<name>.schema.json`` as a dict (``name`` e.g. ``"dataset"``), read once
    and then served from :data:`SCHEMA_CACHE` by its ``$id``."""
    try:
        return SCHEMA_CACHE[schema_id(name)]
    except KeyError:
        pass
    schema = read_schema(schema_dir().joinpath(f"{name}{SUFFIX}"), name)
    SCHEMA_CACHE[schema["$id"]] = schema
    return schema


def _validator(name: str) -> jsonschema.Draft202012Validator:
    sid = schema_id(name)
    if sid not in _VALIDATORS:
        _VALIDATORS[sid] = jsonschema.Draft202012Validator(load_schema(name))
    return _VALIDATORS[sid]


def validate(instance: Any, name: str, what: str = "document", error: type = ConfigError) -> None:
    """Validate ``instance`` against schema ``name``; raise ``error`` naming the key at fault."""
    errors = sorted(_validator(name).iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        key = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise error(f"{what}: key '{key}': {e.message}")
