"""``hepsafe score-bundle``: a tagger's clean and attacked figures on a robustness bundle,
from the bundle's files alone (checksums verified first)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from hepsafe._files import read_json, sha256sum
from hepsafe._schemas import validate as validate_schema
from hepsafe.bundle.metrics import Figures, score_files
from hepsafe.data.jets import JetBatch, read_root
from hepsafe.exceptions import InputError


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The bundle's ``bundle.json``, validated against its schema, with every listed file's
    sha256 checked (an InputError names the first file that is missing or differs)."""
    d = Path(directory)
    manifest: dict[str, Any] = read_json(d / "bundle.json", InputError)
    validate_schema(manifest, "bundle", f"{d / 'bundle.json'}", InputError)
    for rel, digest in manifest["files"].items():
        p = d / rel
        if not p.is_file():
            raise InputError(f"{p}: listed in bundle.json but missing")
        if sha256sum(p) != digest:
            raise InputError(f"{p}: sha256 differs from bundle.json (the file was changed or "
                             "is corrupt)")
    return manifest


def bundle_jets(directory: str | os.PathLike[str],
                manifest: dict[str, Any]) -> dict[str, JetBatch]:
    """The nominal jets and every attacked twin, ``{"nominal": ..., attack: ...}``."""
    d = Path(directory)
    jets = {"nominal": read_root(d / manifest["nominal"])}
    for rec in manifest["attacks"]:
        twin = read_root(d / "jets" / f"{rec['name']}.root")
        if len(twin) != len(jets["nominal"]) or not np.array_equal(
                twin.event, jets["nominal"].event):
            raise InputError(f"{d / 'jets' / (rec['name'] + '.root')}: not a twin of the "
                             "nominal file (jet count or event numbers differ)")
        jets[rec["name"]] = twin
    return jets


def score_bundle(directory: str | os.PathLike[str], tagger: Any) -> list[Figures]:
    """Score ``tagger`` (an :class:`~hepsafe.tagger.onnx.OnnxTagger`) on every file of the
    bundle in ``directory``: one :class:`~hepsafe.bundle.metrics.Figures` per file, the
    nominal first; the working point is the bundle's (from the nominal signal jets)."""
    manifest = read_manifest(directory)
    jets = bundle_jets(directory, manifest)
    scores = {name: tagger.predict(j) for name, j in jets.items()}
    labels = manifest["labels"]
    return score_files(scores, jets, "nominal", int(labels["signal"]),
                       int(labels["background"]),
                       float(manifest["working_point"]["signal_efficiency"]))
