"""Reading samples: chunked reads equal whole reads, reading stops at max_jets, and truncated,
corrupt or non-finite inputs are one-line errors naming the file, branch and entries."""

from __future__ import annotations

import re
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
import yaml

from hepsafe import cli
from hepsafe.data.jets import JetBatch, iter_root, num_entries, read_root, write_root
from hepsafe.data.nanoaod import iter_pfnano, read_pfnano, write_pfnano
from hepsafe.data.reading import read_selected
from hepsafe.data.sample import SAMPLE_FILE, is_test
from hepsafe.exceptions import ConfigError, InputError
from hepsafe.pipeline import config as config
from hepsafe.pipeline import runner as pipeline


def _same(a: JetBatch, b: JetBatch) -> None:
    assert len(a) == len(b)
    for k, v in a.jet_arrays().items():
        assert np.array_equal(v, getattr(b, k)), k
    assert a.parts.fields == b.parts.fields
    for f in a.parts.fields:
        assert ak.array_equal(a.parts[f], b.parts[f]), f


def _reference(batch: JetBatch, label: int | None, split: str, max_jets: int | None) -> JetBatch:
    """The old way: everything read, then cut."""
    keep = np.ones(len(batch), dtype=bool) if label is None else batch.label == label
    if split != "all":
        keep &= is_test(batch.event) if split == "test" else ~is_test(batch.event)
    return batch[keep][:max_jets]


def _truncated(src: Path, out: Path) -> Path:
    data = src.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    return out


def _flipped(src: Path, out: Path, where: int | None = None, n: int = 64) -> Path:
    data = bytearray(src.read_bytes())
    at = len(data) // 2 if where is None else where
    data[at:at + n] = bytes(x ^ 0xFF for x in data[at:at + n])
    out.write_bytes(bytes(data))
    return out


def _basket_middle(path: Path, tree: str, branch: str) -> int:
    """The byte offset of the middle of ``branch``'s first basket."""
    b = uproot.open(path)[tree][branch]
    return int(b.member("fBasketSeek")[0]) + int(b.member("fBasketBytes")[0]) // 2


@pytest.fixture(scope="module")
def mixed(sample, tmp_path_factory) -> Path:
    """Every 5th jet of the shipped sample (all classes), written in the hepsafe format."""
    return write_root(sample[::5], tmp_path_factory.mktemp("mixed") / "mixed.root")


@pytest.mark.parametrize("step", [333, 1000, 4999, 10**6])
def test_chunked_selection_equals_whole_read(mixed, step):
    whole = read_root(mixed)
    for label, split, max_jets in ((1, "test", 300), (0, "train", None), (None, "all", 1234),
                                   (2, "all", None)):
        got = read_selected([mixed], label=label, split=split, max_jets=max_jets,
                            step_size=step)
        _same(_reference(whole, label, split, max_jets), got)
    # across files: the first max_jets selected jets of the files in order
    two = read_selected([mixed, mixed], label=1, max_jets=1500, step_size=step)
    both = JetBatch.concatenate([whole, whole])
    _same(_reference(both, 1, "all", 1500), two)


def test_shipped_sample_streamed_like_the_demo(sample):
    """The demo's selection on the shipped sample, default chunking, through the config."""
    doc = yaml.safe_load(config.DEMO_CONFIG.read_text())
    for s in doc["samples"]:
        s["files"] = [str(SAMPLE_FILE)]
        s["max_jets"] = 1000
    cfg = config.from_dict(doc, source="demo.yaml")
    samples = pipeline.load_samples(cfg)
    for s in doc["samples"]:
        ref = _reference(sample, s["label"], s["split"], 1000)
        if "scale" in s:
            ref = ref.replace(weight=(ref.weight * s["scale"]).astype(np.float32))
        _same(ref, samples[s["name"]].jets)


def test_reading_stops_once_max_jets_are_collected(mixed, tmp_path):
    """A broken file after the jets needed is never read; one more jet and it is."""
    bad = _truncated(mixed, tmp_path / "later.root")
    n = num_entries(mixed)
    assert len(read_selected([mixed, bad], max_jets=n, step_size=700)) == n
    with pytest.raises(InputError, match=r"later\.root"):
        read_selected([mixed, bad], max_jets=n + 1, step_size=700)


def test_iter_root_entries_are_absolute(small, tmp_path):
    path = write_root(small, tmp_path / "s.root")
    starts = [c.meta["entry_start"] for c in iter_root(path, step_size=120)]
    assert starts == list(range(0, len(small), 120))
    picked = list(iter_root(path, 64, select=lambda lab, ev: lab == 2, max_jets=30))
    assert sum(len(c) for c in picked) == 30 and all((c.label == 2).all() for c in picked)


@pytest.mark.parametrize("step", [7, 40, 10**6])
def test_pfnano_chunks_equal_whole(small, tmp_path, step):
    path = write_pfnano(small, tmp_path / "nano.root", 3)
    whole = read_pfnano(path)
    _same(whole, JetBatch.concatenate(list(iter_pfnano(path, step_size=step))))
    got = read_selected([path], fmt="pfnano", split="test", max_jets=100, step_size=step)
    _same(_reference(whole, None, "test", 100), got)


# ----------------------------------------------------------------------- broken files
def _one_line_error(capsys, argv: list[str]) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("hepsafe: error: "), err
    assert "Traceback" not in err
    return err


def test_truncated_file(tmp_path, capsys):
    bad = _truncated(SAMPLE_FILE, tmp_path / "cut.root")
    with pytest.raises(InputError, match=r"cut\.root: .*truncated or corrupt") as exc:
        read_root(bad)
    assert "\n" not in str(exc.value)
    err = _one_line_error(capsys, ["info", str(bad)])
    assert "cut.root" in err and "expected a complete" in err
    head = tmp_path / "head.root"  # cut inside the header: the error comes at open
    head.write_bytes(SAMPLE_FILE.read_bytes()[:300])
    with pytest.raises(InputError, match=r"head\.root: not a readable ROOT file \(.+\): "
                                         r"truncated or corrupt, expected a complete ROOT file$"):
        read_root(head)


def test_corrupt_middle(tmp_path, capsys):
    bad = _flipped(SAMPLE_FILE, tmp_path / "flip.root")
    with pytest.raises(InputError, match=r"flip\.root") as exc:
        read_root(bad)
    assert "\n" not in str(exc.value)
    assert "flip.root" in _one_line_error(capsys, ["info", str(bad)])


@pytest.mark.parametrize("branch", ["part_eta", "jet_mass"])
def test_corrupt_basket_names_branch_and_entries(small, tmp_path, branch):
    good = write_root(small, tmp_path / "good.root")
    bad = _flipped(good, tmp_path / "bad.root", _basket_middle(good, "jets", branch), 16)
    n = num_entries(bad)  # the file opens: the damage shows when the branch is read
    with pytest.raises(InputError, match=rf"bad\.root: branch '{branch}', entries \[0, {n}\): "
                                         r"cannot be read \(.+\): the file is truncated or "
                                         r"corrupt, expected a complete ROOT file$"):
        read_root(bad)
    with pytest.raises(InputError, match=rf"branch '{branch}', entries \[200, 300\)"):
        read_root(bad, entry_start=200, entry_stop=300)
    with pytest.raises(InputError, match=rf"branch '{branch}', entries \[0, 100\)"):
        next(iter_root(bad, step_size=100))
    assert good.read_bytes() != bad.read_bytes()


def test_pfnano_corrupt_basket(small, tmp_path):
    good = write_pfnano(small, tmp_path / "nano.root", 2)
    bad = _flipped(good, tmp_path / "bad.root", _basket_middle(good, "Events", "PFCands_eta"),
                   16)
    with pytest.raises(InputError, match=r"bad\.root: branch 'PFCands_eta', entries \[0, "):
        read_pfnano(bad)
    with pytest.raises(InputError, match=r"cut\.root"):
        read_pfnano(_truncated(good, tmp_path / "cut.root"))


def _run_doc(tmp_path: Path, files: dict[str, str], fmt: str) -> Path:
    doc = {
        "format": fmt,
        "samples": [{"name": "W", "role": "signal", "files": [files["W"]], "max_jets": 50},
                    {"name": "QCD", "role": "background", "files": [files["QCD"]],
                     "max_jets": 50}],
        "tagger": {"model": "pfn"},
        "variations": [{"type": "scale_all", "name": "escale"}],
        "output": str(tmp_path / "out"),
    }
    path = tmp_path / f"run_{fmt}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("fmt", ["hepsafe", "pfnano"])
def test_run_on_broken_file_is_one_line(small, tmp_path, capsys, fmt):
    write = write_root if fmt == "hepsafe" else write_pfnano
    good = write(small, tmp_path / "good.root")
    tree = "jets" if fmt == "hepsafe" else "Events"
    branch = "part_phi" if fmt == "hepsafe" else "PFCands_phi"
    bad = _flipped(good, tmp_path / "bad.root", _basket_middle(good, tree, branch), 16)
    cfg = _run_doc(tmp_path, {"W": str(good), "QCD": str(bad)}, fmt)
    err = _one_line_error(capsys, ["run", str(cfg), "-q"])
    assert re.search(rf"bad\.root: branch '{branch}', entries \[0, \d+\)", err), err
    assert not (tmp_path / "out").exists()
    cut = _truncated(good, tmp_path / "cut.root")
    cfg = _run_doc(tmp_path, {"W": str(cut), "QCD": str(good)}, fmt)
    assert "cut.root" in _one_line_error(capsys, ["run", str(cfg), "-q"])
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------- non-finite values
def test_non_finite_values_name_branch_and_entry(small, tmp_path, capsys):
    b = small[:40]
    pt = b.pt.copy()
    pt[7] = np.nan
    path = write_root(b.replace(pt=pt), tmp_path / "nan.root")
    with pytest.raises(InputError, match=r"nan\.root: branch 'jet_pt' is nan at entry 7; "
                                         r"expected finite"):
        read_root(path)
    with pytest.raises(InputError, match=r"branch 'jet_pt' is nan at entry 7"):
        list(iter_root(path, step_size=5))  # entries counted from the file's start
    err = _one_line_error(capsys, ["info", str(path)])
    assert "nan.root" in err and "jet_pt" in err
    w = b.weight.copy()
    w[3] = np.inf
    path = write_root(b.replace(weight=w), tmp_path / "w.root")
    with pytest.raises(InputError, match=r"branch 'weight' is inf at entry 3"):
        read_root(path)
    energy = b.flat("energy")
    energy[b.offsets[5] + 2] = -np.inf
    path = write_root(b.with_parts(energy=energy), tmp_path / "e.root")
    with pytest.raises(InputError, match=r"branch 'part_energy' is -inf at entry 5 \(item 2\)"):
        read_root(path)


def test_pfnano_non_finite(small, tmp_path):
    b = small[:20]
    mass = b.mass.copy()
    mass[7] = np.nan  # jets 6 and 7 form event 3
    path = write_pfnano(b.replace(mass=mass), tmp_path / "m.root", 2)
    with pytest.raises(InputError, match=r"m\.root: branch 'FatJet_mass' is nan at entry 3 "
                                         r"\(item 1\)"):
        read_pfnano(path)
    eta = b.flat("eta")
    eta[b.offsets[5] + 2] = np.inf  # event 2 holds jets 4 and 5
    path = write_pfnano(b.with_parts(eta=eta), tmp_path / "e.root", 2)
    item = int(b.n_parts[4]) + 2
    with pytest.raises(InputError, match=rf"branch 'PFCands_eta' is inf at entry 2 "
                                         rf"\(item {item}\)"):
        read_pfnano(path)


# ----------------------------------------------------------------------- configuration
def test_read_step_size_option(mixed, tmp_path):
    def doc(**extra):
        return {"samples": [{"name": "W", "role": "signal", "files": [str(mixed)], "label": 1},
                            {"name": "Q", "role": "background", "files": [str(mixed)],
                             "label": 7}],
                "tagger": {"model": "pfn"}, "variations": [{"type": "scale_all"}],
                "output": str(tmp_path / "o"), **extra}

    with pytest.raises(ConfigError, match=r"key 'read/step_size'"):
        config.from_dict(doc(read={"step_size": 0}), source="r.yaml")
    with pytest.raises(ConfigError, match=r"r\.yaml.*'read'.*chunk"):
        config.from_dict(doc(read={"chunk": 10}), source="r.yaml")
    cfg = config.from_dict(doc(read={"step_size": 250}), source="r.yaml")
    assert cfg["read"]["step_size"] == 250
    with pytest.raises(InputError, match=r"r\.yaml: key 'samples/1' \('Q'\): no jets selected"):
        pipeline.load_samples(cfg)
