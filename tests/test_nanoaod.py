"""PFNano-layout files map to JetBatch exactly; PUPPI weights, corrected jets, soft-drop
mass."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot
import yaml
from pfnano_helpers import puppi_batch

from hepsafe import tagger
from hepsafe.data.nanoaod import branch_names, jets_from_arrays, read_pfnano, write_pfnano
from hepsafe.data.regions import Region
from hepsafe.exceptions import ConfigError, InputError
from hepsafe.perturbation import variations as variations
from hepsafe.perturbation.perturber import Perturber
from hepsafe.pipeline import config as config


@pytest.mark.parametrize("collection,per_event", [("FatJet", 3), ("Jet", 1)])
def test_round_trip(small, tmp_path, collection, per_event):
    path = write_pfnano(small, tmp_path / "nano.root", per_event, collection)
    back = read_pfnano(path, collection)
    assert len(back) == len(small)
    for f in ("pt", "eta", "phi", "mass"):
        assert np.array_equal(getattr(back, f), getattr(small, f)), f
    assert np.array_equal(back.n_parts, small.n_parts)
    for f in ("pt", "eta", "phi", "charge", "pid"):
        assert ak.array_equal(back.parts[f], small.parts[f]), f
    assert np.allclose(back.flat("energy"), small.flat("energy"), rtol=2e-4)
    assert np.array_equal(back.jet_index, np.arange(len(small)) % per_event)
    assert np.array_equal(back.event, np.arange(len(small)) // per_event + 1)
    assert back.meta["puppi"] is (collection == "FatJet") and back.msoftdrop is None


def test_chunked_events_equal_whole(small, tmp_path):
    path = write_pfnano(small, tmp_path / "nano.root", 2)
    whole = read_pfnano(path)
    parts = [read_pfnano(path, entry_start=s, entry_stop=s + 37) for s in range(0, 250, 37)]
    assert np.array_equal(np.concatenate([p.pt for p in parts]), whole.pt)
    assert np.array_equal(np.concatenate([p.jet_index for p in parts]), whole.jet_index)


def test_jets_without_candidates_are_kept(small):
    b = small[:4]
    arrays = {
        "FatJet_pt": ak.Array([b.pt[:2].tolist(), b.pt[2:].tolist()]),
        "FatJet_eta": ak.Array([b.eta[:2].tolist(), b.eta[2:].tolist()]),
        "FatJet_phi": ak.Array([b.phi[:2].tolist(), b.phi[2:].tolist()]),
        "FatJet_mass": ak.Array([b.mass[:2].tolist(), b.mass[2:].tolist()]),
        # only jet 1 of event 0 has candidates
        "FatJetPFCands_jetIdx": ak.Array([[1, 1], []]),
        "FatJetPFCands_pFCandsIdx": ak.Array([[0, 1], []]),
        **{f"PFCands_{f}": ak.Array([[3.0, 5.0], []]) for f in ("pt", "eta", "phi", "mass")},
        "PFCands_charge": ak.Array([[1, 0], []]),
        "PFCands_pdgId": ak.Array([[211, 22], []]),
    }
    with pytest.raises(InputError, match="'PFCands_puppiWeight'.*'puppi'"):
        jets_from_arrays(arrays)
    out = jets_from_arrays(arrays, puppi=False)
    assert out.meta["puppi"] is False
    assert list(out.n_parts) == [0, 2, 0, 0]
    assert out.parts.pt[1].tolist() == [5.0, 3.0]  # decreasing pT


def test_missing_branch_named(small, tmp_path):
    path = tmp_path / "bad.root"
    with uproot.recreate(path) as f:
        f["Events"] = {"FatJet_pt": ak.Array([[500.0]])}
    with pytest.raises(InputError, match=r"bad\.root.*'FatJet_eta'"):
        read_pfnano(path)


def test_bad_index_named(small):
    arrays = {b: ak.Array([[1.0]]) for b in branch_names()}
    arrays["FatJetPFCands_jetIdx"] = ak.Array([[0]])
    arrays["FatJetPFCands_pFCandsIdx"] = ak.Array([[4]])
    with pytest.raises(InputError, match="event 0.*pFCandsIdx 4 of 1"):
        jets_from_arrays(arrays)


def test_unknown_collection():
    with pytest.raises(InputError, match="collection"):
        branch_names("AK15Jet")


# --------------------------------------------------------------------------- PUPPI
@pytest.fixture(scope="module")
def puppi_file(sample, tmp_path_factory):
    """A PFNano-layout file of 2500 sample jets with PUPPI weights, pileup candidates
    (some of weight 0), corrected jets (rawFactor) and soft-drop masses."""
    batch, weight, raw_factor = puppi_batch(sample[::10], seed=1)
    path = tmp_path_factory.mktemp("puppi") / "puppi.root"
    write_pfnano(batch, path, 3, puppi_weight=weight, raw_factor=raw_factor)
    return path, batch, weight


def _raw(path):
    """Raw jet pT and mass [GeV], ``pt * (1 - rawFactor)``, straight from the file."""
    with uproot.open(path) as f:
        a = f["Events"].arrays(["FatJet_pt", "FatJet_mass", "FatJet_rawFactor"], how=dict)
    keep = 1 - a["FatJet_rawFactor"]
    return (ak.to_numpy(ak.flatten(a["FatJet_pt"] * keep)),
            ak.to_numpy(ak.flatten(a["FatJet_mass"] * keep)))


def _rms(x, ref):
    return float(np.sqrt(np.mean((x.astype(np.float64) / ref - 1) ** 2)))


def test_puppi_weighted_sums_are_the_raw_jet(puppi_file):
    path, batch, weight = puppi_file
    raw_pt, raw_m = _raw(path)
    jets = read_pfnano(path)
    assert jets.meta["puppi"] is True
    sums = Perturber(jets).nominal_sums
    assert _rms(sums[0], raw_pt) < 0.005 and _rms(sums[3], raw_m) < 0.005
    # candidates of weight 0 are not in the PUPPI jet; the jets keep the file's values
    n_w = np.bincount(np.repeat(np.arange(len(batch)), batch.n_parts), weight > 0)
    assert np.array_equal(jets.n_parts, n_w) and (weight == 0).any()
    with uproot.open(path) as f:
        corrected = ak.to_numpy(ak.flatten(f["Events"]["FatJet_pt"].array()))
        msd = ak.to_numpy(ak.flatten(f["Events"]["FatJet_msoftdrop"].array()))
    assert np.array_equal(jets.pt, corrected) and np.array_equal(jets.msoftdrop, msd)
    assert _rms(jets.pt, raw_pt) > 0.03  # corrected != raw: the test means something
    # unweighted, the candidate sums are not the jet
    plain = read_pfnano(path, puppi=False)
    assert plain.meta["puppi"] is False and np.array_equal(plain.n_parts, batch.n_parts)
    plain_sums = Perturber(plain).nominal_sums
    assert _rms(plain_sums[0], raw_pt) > 0.01 and _rms(plain_sums[3], raw_m) > 0.05


def test_zero_delta_leaves_every_fatjet_bit_for_bit(puppi_file):
    jets = read_pfnano(puppi_file[0])
    zero = [Perturber(jets).apply(None).jets,
            variations.energy_scale(jets, 0.0), variations.energy_smear(jets, sigma=0.0),
            variations.angular_smear(jets, sigma=0.0), variations.tracking_loss(jets, p=0.0)]
    for out in zero:
        for k in ("pt", "eta", "phi", "mass", "msoftdrop"):
            assert getattr(out, k).tobytes() == getattr(jets, k).tobytes(), k
    # a real variation moves the corrected jet by the ratio of the sums, not to the sums
    up = variations.energy_scale(jets, 0.02)
    np.testing.assert_allclose(up.pt / jets.pt, 1.02, rtol=1e-5)
    np.testing.assert_allclose(up.msoftdrop / jets.msoftdrop, up.mass / jets.mass, rtol=1e-6)


def test_learned_adversary_keeps_the_corrected_jet(puppi_file):
    from hepsafe.attacks.adversary.training import LearnedAdversary

    jets = read_pfnano(puppi_file[0])[:600]
    adv = LearnedAdversary.load("adversary_pfn", tagger.reference("pfn", providers="cpu"))
    res = adv(jets, "down")
    ok = ~res.flagged
    env = adv.envelope
    assert ok.mean() > 0.95
    assert np.all(np.abs(res.jets.pt[ok] / jets.pt[ok] - 1) <= env.pt_tol + 1e-5)
    assert np.all(np.abs(res.jets.mass[ok] - jets.mass[ok])
                  <= env.mass_tol * jets.mass[ok] + env.mass_atol + 1e-3)
    assert abs(float(np.mean(res.jets.pt / jets.pt - 1))) < 0.002
    assert not np.array_equal(res.jets.flat("pt"), jets.flat("pt"))


def test_bad_puppi_weight_named():
    arrays = {b: ak.Array([[1.0]]) for b in branch_names()}
    arrays["FatJetPFCands_jetIdx"] = ak.Array([[0]])
    arrays["FatJetPFCands_pFCandsIdx"] = ak.Array([[0]])
    arrays["PFCands_puppiWeight"] = ak.Array([[1.5]])
    with pytest.raises(InputError, match="event 0: PFCands_puppiWeight is 1.5, expected a "
                                         r"weight in \[0, 1\]"):
        jets_from_arrays(arrays)
    assert "PFCands_puppiWeight" in branch_names("FatJet")
    assert "PFCands_puppiWeight" not in branch_names("Jet")
    assert "PFCands_puppiWeight" in branch_names("Jet", puppi=True)


def test_missing_puppi_branch_named(small, tmp_path):
    path = write_pfnano(small[:10], tmp_path / "nano.root")
    with uproot.open(path) as f:
        arrays = f["Events"].arrays(how=dict)
    del arrays["PFCands_puppiWeight"]
    cut = tmp_path / "nopuppi.root"
    with uproot.recreate(cut) as f:
        f["Events"] = {k: v for k, v in arrays.items() if not k.startswith("n")}
    with pytest.raises(InputError, match=r"nopuppi\.root.*'PFCands_puppiWeight'.*'puppi'"):
        read_pfnano(cut)
    assert len(read_pfnano(cut, puppi=False)) == 10


# --------------------------------------------------------------------------- soft-drop region
def test_soft_drop_region(puppi_file):
    jets = read_pfnano(puppi_file[0])
    box = Region(jet_msoftdrop=(40.0, 90.0))
    inside = box.mask(jets)
    assert np.array_equal(inside, (jets.msoftdrop > 40) & (jets.msoftdrop < 90))
    assert 0 < inside.mean() < 1
    assert box.describe() == "40 < jet soft-drop mass < 90 GeV"
    down = variations.energy_scale(jets, -0.05)
    assert (box.mask(down) != inside).any()  # varied jets migrate by their own msoftdrop
    with pytest.raises(ConfigError, match=r"region 'jet_msoftdrop'.*small\.root.*no soft-drop"):
        box.mask(jets.replace(msoftdrop=None, meta={"source": "small.root"}))
    assert Region.from_dict({"jet_msoftdrop": [40, 90]}) == box


def _run_config(tmp_path, files, **extra):
    doc = {"format": "pfnano",
           "samples": [{"name": "S", "role": "signal", "files": [str(files[0])]},
                       {"name": "B", "role": "background", "files": [str(files[1])]}],
           "tagger": {"model": "pfn"}, "variations": [{"type": "scale_all"}],
           "output": str(tmp_path / "out"), **extra}
    p = tmp_path / "run.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def test_run_config_puppi_and_soft_drop_region(puppi_file, small, tmp_path, capsys):
    from hepsafe import cli
    from hepsafe.pipeline.runner import load_samples

    plain = write_pfnano(small, tmp_path / "plain.root")  # no FatJet_msoftdrop
    cfg = config.load(_run_config(tmp_path, [puppi_file[0], puppi_file[0]],
                                  region={"jet_msoftdrop": [40.0, 90.0]}))
    assert cfg["puppi"] is True and cfg["region"] == {"jet_msoftdrop": [40.0, 90.0]}
    jets = load_samples(cfg)["S"].jets
    assert jets.meta["puppi"] is True and jets.msoftdrop is not None
    off = config.load(_run_config(tmp_path, [puppi_file[0], plain], puppi=False))
    assert off["puppi"] is False and load_samples(off)["S"].jets.meta["puppi"] is False
    assert config.load(_run_config(tmp_path, [plain, plain], collection="Jet"))["puppi"] is False
    # no soft-drop mass in a sample: one line naming the key, the sample and the file
    bad = _run_config(tmp_path, [puppi_file[0], plain], region={"jet_msoftdrop": [40, 90]})
    with pytest.raises(ConfigError, match=r"'region/jet_msoftdrop'.*'B'.*msoftdrop.*plain"):
        load_samples(config.load(bad))
    assert cli.main(["run", str(bad), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "'region/jet_msoftdrop'" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    # and the hepsafe format has none at all: an error at load
    own = _run_config(tmp_path, [plain, plain], region={"jet_msoftdrop": [40, 90]})
    doc = yaml.safe_load(own.read_text())
    doc["format"] = "hepsafe"
    own.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="'region/jet_msoftdrop'.*format 'hepsafe'"):
        config.load(own)
