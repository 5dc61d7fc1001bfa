"""The robustness-challenge bundle: `hepsafe bundle` + `hepsafe score-bundle` round-trip on
the shipped sample, schema'd cards, checksums, twins inside the envelope."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import yaml

from hepsafe import cli
from hepsafe._schemas import validate
from hepsafe.bundle import read_manifest, score_bundle
from hepsafe.bundle.writer import BUNDLE_CONFIG
from hepsafe.data.jets import read_root
from hepsafe.exceptions import InputError
from hepsafe.tagger.onnx import reference


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle of 300 W and 300 QCD test jets with FGSM and the learned adversary."""
    raw = yaml.safe_load(BUNDLE_CONFIG.read_text())
    d = tmp_path_factory.mktemp("bundle")
    for s in raw["samples"]:
        s["files"] = [str(BUNDLE_CONFIG.parent / f) for f in s["files"]]
        s["max_jets"] = 300
    raw["attacks"] = [a for a in raw["attacks"] if a["type"] in ("fgsm", "learned")]
    cfg = d / "bundle.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    out = d / "out"
    assert cli.main(["bundle", "--config", str(cfg), "-o", str(out)]) == 0
    return out


def test_round_trip_reproduces_the_reference_figures(bundle: Path) -> None:
    manifest = read_manifest(bundle)
    tagger = reference("pfn", providers="cpu", intra_op_threads=1)
    rows = score_bundle(bundle, tagger)
    assert [r.name for r in rows] == ["nominal", "fgsm", "learned"]
    for got, want in zip(rows, manifest["reference"]["figures"], strict=True):
        assert got.name == want["name"]
        for key in ("auc", "eps_s", "eps_b", "threshold", "d_eps_s"):
            assert getattr(got, key) == pytest.approx(want[key], abs=1e-12), key
    nominal, fgsm = rows[0], rows[1]
    assert nominal.eps_s == pytest.approx(0.5, abs=0.01)
    assert fgsm.eps_s < nominal.eps_s  # the attack lowers the W efficiency


def test_cards_validate_and_twins_stay_in_the_envelope(bundle: Path) -> None:
    manifest = json.loads((bundle / "bundle.json").read_text())
    validate(manifest, "bundle", "bundle.json")
    envelope = json.loads((bundle / "envelope.json").read_text())
    nominal = read_root(bundle / "jets" / "nominal.root")
    for name in ("nominal", "fgsm", "learned"):
        card = json.loads((bundle / "jets" / f"{name}.json").read_text())
        validate(card, "dataset", f"{name}.json")
        assert card["n_jets"] == len(nominal)
        if name == "nominal":
            continue
        assert card["perturbation"]["nominal"]["sha256"] == manifest["files"]["jets/nominal.root"]
        twin = read_root(bundle / "jets" / f"{name}.root")
        assert np.array_equal(twin.event, nominal.event)
        assert np.array_equal(twin.label, nominal.label)
        pt0 = ak.to_numpy(ak.flatten(nominal.parts.pt)).astype(np.float64)
        pt1 = ak.to_numpy(ak.flatten(twin.parts.pt)).astype(np.float64)
        rel = np.abs(pt1 / pt0 - 1.0)
        assert rel.max() <= envelope["bounds"]["pt"] * (1 + 1e-3) + 1e-6
        assert rel.max() > 0  # the twin differs from the nominal jets


def test_a_changed_file_is_refused(bundle: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    path = copy / "jets" / "fgsm.root"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="fgsm.root: sha256 differs"):
        read_manifest(copy)
    capsys.readouterr()
    assert cli.main(["score-bundle", str(copy), "--tagger", str(reference("pfn").path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "fgsm.root" in err
