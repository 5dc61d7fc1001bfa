"""Schemas: found through importlib.resources (shipped copy or source tree), each carrying
its ``$id``, loaded once and cached by it; a bad document names the key at fault."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest

from hepsafe import _schemas as schemas
from hepsafe.exceptions import CardError, ConfigError

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "schemas"
NAMES = sorted(p.name[: -len(schemas.SUFFIX)] for p in SOURCE.glob(f"*{schemas.SUFFIX}"))


def test_every_source_schema_is_found_and_carries_its_id():
    assert {"dataset", "envelope", "run", "tagger", "templates", "workspace_config"} <= set(NAMES)
    found = schemas.schema_dir()
    for name in NAMES:
        schema = schemas.load_schema(name)
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$id"] == schemas.schema_id(name) == f"hepsafe/{name}.schema.json"
        # what the package reads is the source (the shipped copy or the tree itself)
        assert schema == json.loads((SOURCE / f"{name}.schema.json").read_text())
        assert found.joinpath(f"{name}.schema.json").is_file()


def test_loaded_once_and_cached_by_id():
    first = schemas.load_schema("tagger")
    assert schemas.load_schema("tagger") is first
    assert schemas.SCHEMA_CACHE["hepsafe/tagger.schema.json"] is first


def test_wheel_ships_the_source_directory_inside_the_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    force = project["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert force["schemas"] == "hepsafe/schemas"


def _package(tmp_path: Path, name: str, inside: bool, sibling: bool) -> None:
    pkg = tmp_path / "src" / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    for where, on in ((pkg / "schemas", inside), (tmp_path / "src" / "schemas", sibling)):
        if on:
            where.mkdir()
            (where / "x.schema.json").write_text(json.dumps({"$id": "hepsafe/x.schema.json"}))


@pytest.mark.parametrize(("inside", "found"), [
    (True, "{pkg}/schemas"),  # wheel layout: the shipped copy (a source copy beside is ignored)
    (False, "schemas"),       # editable layout: the source tree beside the package
])
def test_schema_dir_prefers_the_shipped_copy(tmp_path, monkeypatch, inside, found):
    name = f"hs_schema_probe_{int(inside)}"
    _package(tmp_path, name, inside, sibling=True)
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    got = Path(str(schemas.schema_dir(name)))
    assert got == tmp_path / "src" / found.format(pkg=name)
    assert schemas.read_schema(got / "x.schema.json", "x")["$id"] == "hepsafe/x.schema.json"
    sys.modules.pop(name, None)


def test_missing_directory_unknown_name_and_wrong_id(tmp_path, monkeypatch):
    _package(tmp_path, "hs_schema_probe_none", inside=False, sibling=False)
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    with pytest.raises(FileNotFoundError, match="hs_schema_probe_none schemas not found"):
        schemas.schema_dir("hs_schema_probe_none")
    sys.modules.pop("hs_schema_probe_none", None)
    with pytest.raises(ConfigError, match="no schema named 'bogus'"):
        schemas.load_schema("bogus")
    bad = tmp_path / "y.schema.json"
    bad.write_text(json.dumps({"$id": "elsewhere/y.json"}))
    with pytest.raises(ConfigError, match=r"key '\$id' is 'elsewhere/y.json', expected "
                                          "'hepsafe/y.schema.json'"):
        schemas.read_schema(bad, "y")


def test_validate_names_the_document_and_key():
    card = json.loads((ROOT / "hepsafe" / "models" / "pfn.json").read_text())
    schemas.validate(card, "tagger", what="pfn card", error=CardError)
    card["output"]["signal"] = 3
    with pytest.raises(CardError, match=r"^pfn card: key 'output/signal': 3 is not of type"):
        schemas.validate(card, "tagger", what="pfn card", error=CardError)
    with pytest.raises(ConfigError, match=r"^document: key '\(top level\)': 'name' is a "
                                          "required property"):
        schemas.validate({"format": "x"}, "tagger")
