"""The coffea processor step: ONNX wrapper, input formats, executors, bad files.

Needs the ``coffea`` extra; the dask-awkward path also needs dask-awkward and dask-histogram
(skipped without them).
"""

from __future__ import annotations

import pickle
import shutil
import warnings
from pathlib import Path

import pytest

pytest.importorskip("coffea")

import awkward as ak  # noqa: E402
import numpy as np  # noqa: E402
from coffea import processor  # noqa: E402
from coffea.nanoevents import BaseSchema, NanoEventsFactory, PFNanoAODSchema  # noqa: E402
from pfnano_helpers import puppi_batch  # noqa: E402

from hepsafe import tagger
from hepsafe.coffea import (  # noqa: E402
    AdversarialProcessor,
    AdversarialSystematics,
    JetSource,
    OnnxWrapper,
    PhysicsShift,
    Systematic,
    physics_systematic,
    run_apply_to_fileset,
    run_fileset,
    to_templates,
)
from hepsafe.coffea.inputs import pf_constituents  # noqa: E402
from hepsafe.coffea.run import SkippedFilesWarning  # noqa: E402
from hepsafe.data import nanoaod as nanoaod  # noqa: E402
from hepsafe.data.jets import JetBatch, write_root  # noqa: E402
from hepsafe.data.regions import Region  # noqa: E402
from hepsafe.exceptions import ConfigError, InputError  # noqa: E402
from hepsafe.fit import workspace as W  # noqa: E402
from hepsafe.models import MODELS_DIR
from hepsafe.perturbation import variations as variations
from hepsafe.perturbation.shifts import ADVERSARY_MODEL, LearnedShift  # noqa: E402
from hepsafe.templates import booking as T  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Missing cross-reference")

N_JETS = 6000
HAS_ADVERSARY = ADVERSARY_MODEL.exists()


def _systematics() -> list[Systematic]:
    out = [
        Systematic("escale", PhysicsShift("scale_all_up"), PhysicsShift("scale_all_down")),
        Systematic("smear", PhysicsShift("smear_energy", seed=3)),
        Systematic("tracking", PhysicsShift("tracking_loss", seed=3)),
    ]
    if HAS_ADVERSARY:
        out.append(Systematic("adversary", LearnedShift()))
    return out


@pytest.fixture(scope="module")
def jets(sample: JetBatch) -> JetBatch:
    """6000 jets of all classes (every 4th of the shipped sample)."""
    return sample[::4][:N_JETS]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, jets: JetBatch) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("coffea")
    own = write_root(jets, d / "jets.root")
    nano = nanoaod.write_pfnano(jets[:1200], d / "nano.root", jets_per_event=3)
    garbage = d / "garbage.root"
    garbage.write_bytes(b"not a ROOT file" * 100)
    # a file that opens but whose constituent basket is corrupt
    import uproot

    corrupt = d / "corrupt.root"
    shutil.copy(own, corrupt)
    with uproot.open(own) as f:
        branch = f["jets"]["part_pt"]
        seek, size = int(branch.member("fBasketSeek")[0]), int(branch.member("fBasketBytes")[0])
    with open(corrupt, "r+b") as g:
        g.seek(seek + size // 2)
        g.write(b"\0" * 256)
    return {"own": own, "nano": nano, "garbage": garbage, "corrupt": corrupt,
            "missing": d / "missing.root"}


@pytest.fixture(scope="module")
def proc() -> AdversarialProcessor:
    step = AdversarialSystematics(OnnxWrapper(), _systematics(), mass_window=(55.0, 105.0),
                                  samples={1: "W", 0: "QCD"})
    return AdversarialProcessor(step)


def _run(files, proc, executor="iterative", chunksize=N_JETS, **kw):
    out, report = run_fileset({"sample": [str(files["own"])]}, proc, executor,
                              treename="jets", chunksize=chunksize, **kw)
    assert report.complete and report.processed == {str(files["own"]): N_JETS}
    return out


def _cells(out) -> dict:
    """Every cell's values and variances as bytes (bit-identical comparison), plus cutflow."""
    h = out["templates"]["SR"]
    view = h.view(flow=True)
    return {
        "axes": ([str(s) for s in h.axes[1]], [str(v) for v in h.axes[2]]),
        "edges": h.axes[0].edges.tobytes(),
        "values": np.ascontiguousarray(view.value).tobytes(),
        "variances": np.ascontiguousarray(view.variance).tobytes(),
        "cutflow": out["cutflow"],
    }


@pytest.fixture(scope="module")
def reference(files, proc) -> dict:
    """The whole file in one chunk, iterative executor."""
    return _cells(_run(files, proc))


# --------------------------------------------------------------------------- wrapper
def test_wrapper_matches_tagger_and_pickles_light(jets: JetBatch) -> None:
    w = OnnxWrapper()
    sub = jets[:700]
    expected = tagger.reference("pfn").predict(sub)
    got = w.score(sub.parts)
    assert got.dtype == np.float32 and np.array_equal(got, expected)
    blob = pickle.dumps(w)
    assert len(blob) < 10_000  # path, card and options only: no ONNX session
    w2 = pickle.loads(blob)
    assert w2._tagger is None and np.array_equal(w2.score(sub.parts), expected)
    # every ONNX Runtime call has the same batch size: a lone jet scores as in a batch
    one = np.concatenate([w.score(sub[i : i + 1].parts) for i in range(5)])
    assert np.array_equal(one, expected[:5])
    # numpy path, and events x jets structure kept
    padded, _ = w.prepare_awkward(sub.parts)
    assert np.array_equal(w(*(ak.to_numpy(x) for x in padded)), expected)
    nested = ak.unflatten(sub.parts, np.full(350, 2))
    scores = w(nested)
    assert ak.to_list(ak.num(scores, axis=1)) == [2] * 350
    assert np.array_equal(ak.to_numpy(ak.flatten(scores)), expected)


def test_wrapper_zero_length_and_masked(jets: JetBatch) -> None:
    w = OnnxWrapper()
    empty = w(jets.parts[:0])
    assert len(empty) == 0 and str(empty.type) == "0 * float32"
    empty_events = w(ak.unflatten(jets.parts[:0], np.zeros(3, dtype=np.int64)))
    assert ak.to_list(empty_events) == [[], [], []]
    # masked-out constituents are dropped as JetBatch.to_padded drops them
    sub = jets[:300]
    mask = ak.unflatten(np.arange(int(sub.n_parts.sum())) % 3 != 0, sub.n_parts)
    masked = sub.replace(parts=ak.with_field(sub.parts, mask, "mask"))
    assert np.array_equal(w.score(masked.parts), tagger.reference("pfn").predict(masked))


def test_wrapper_on_virtual_arrays(files, jets: JetBatch) -> None:
    events = NanoEventsFactory.from_root({str(files["own"]): "jets"}, schemaclass=BaseSchema,
                                         mode="virtual", entry_stop=500).events()
    parts = ak.zip({f: events[f"part_{f}"] for f in ("pt", "eta", "phi", "energy", "charge")})
    got = ak.to_numpy(OnnxWrapper()(parts))
    assert np.array_equal(got, tagger.reference("pfn").predict(jets[:500]))


def test_wrapper_on_dask_awkward(jets: JetBatch) -> None:
    dak = pytest.importorskip("dask_awkward")
    sub = jets[:600]
    arr = dak.from_awkward(sub.parts, npartitions=3)
    w = OnnxWrapper()
    lazy = w(arr)
    assert isinstance(lazy, dak.Array)
    got = lazy.compute(scheduler="sync")
    assert np.array_equal(ak.to_numpy(got), tagger.reference("pfn").predict(sub))


# --------------------------------------------------------------------------- the step
def test_step_attaches_scores_and_handles_empty_chunks(files, proc) -> None:
    events = NanoEventsFactory.from_root({str(files["own"]): "jets"}, schemaclass=BaseSchema,
                                         mode="virtual", entry_stop=400).events()
    step = proc.step
    table = step.table_of(events)
    out = step.attach(step.source_of(events).jets(events), table)
    assert "hepsafe_score" in out.fields and "hepsafe_score" not in events.fields
    syst = out["hepsafe_systematics"]
    assert set(syst.fields) == {s.name for s in step.systematics}
    nominal = ak.to_numpy(out["hepsafe_score"])
    assert np.array_equal(ak.to_numpy(syst.smear.down.score), nominal)  # one-sided
    assert not np.array_equal(ak.to_numpy(syst.escale.up.score), nominal)
    assert ak.all(syst.escale.up.pt > syst.escale.down.pt)
    # only jets a variation changed are scored again: the same scores as scoring them all
    batch = step.source_of(events).batch(step.source_of(events).columns(events))
    lost = PhysicsShift("tracking_loss", seed=3)(batch, step.tagger)
    expected = tagger.reference("pfn").predict(lost)
    assert np.array_equal(ak.to_numpy(syst.tracking.up.score), expected)
    assert 0 < np.mean(expected != nominal) < 1
    # an empty chunk: empty table of the same type, empty histogram
    empty = step.table_of(events[:0])
    assert len(empty) == 0 and empty.type.content == table.type.content
    acc = proc.process(events[:0])
    assert acc["templates"]["SR"].sum().value == 0 and acc["cutflow"]["dataset"]["jets"] == 0


def test_chunk_sizes_bit_identical(files, proc, reference) -> None:
    for chunksize in (1000, 3333):
        assert _cells(_run(files, proc, chunksize=chunksize)) == reference
    h = to_templates(_run(files, proc, chunksize=3333)).hists["SR"]
    assert [str(v) for v in h.axes[2]] == proc.step.variations
    assert h[:, "W", T.NOMINAL].sum().value > 0 and h[:, "QCD", "escale_up"].sum().value > 0


def test_score_varied_selected_same_templates(files, proc, reference) -> None:
    step = proc.step
    cheap = AdversarialSystematics(step.tagger, step.systematics, mass_window=step.mass_window,
                                   samples=step.samples, score_varied="selected")
    assert _cells(_run(files, AdversarialProcessor(cheap), chunksize=3333)) == reference
    events = NanoEventsFactory.from_root({str(files["own"]): "jets"}, schemaclass=BaseSchema,
                                         mode="virtual", entry_stop=300).events()
    table = cheap.table_of(events)
    up = table.systematics.escale.up
    lo, hi = cheap.mass_window
    inside = ak.to_numpy((up.mass > lo) & (up.mass < hi) & (table.label != 2))
    assert np.isfinite(ak.to_numpy(table.nominal.score)).all()
    assert inside.any() and not inside.all()
    score = ak.to_numpy(up.score)
    assert np.isfinite(score[inside]).all() and np.isnan(score[~inside]).all()


def test_region_in_pt_and_mass_per_variation(files, jets: JetBatch) -> None:
    """A region on jet pT and mass: each variation's templates hold exactly its jets inside
    the box (its own varied pT and mass), for any chunking; mass_window is its shorthand."""
    box = Region(jet_pt=(540.0, 660.0), jet_mass=(55.0, 105.0))
    syst = [Systematic("escale", PhysicsShift("scale_all_up"), PhysicsShift("scale_all_down"))]
    step = AdversarialSystematics(OnnxWrapper(), syst, region=box, samples={1: "W", 0: "QCD"})
    whole = _run(files, AdversarialProcessor(step))
    assert _cells(_run(files, AdversarialProcessor(step), chunksize=1000)) == _cells(whole)
    h = whole["templates"]["SR"]
    for variation, reg in (("nominal", None), ("escale_up", "scale_all_up"),
                           ("escale_down", "scale_all_down")):
        varied = jets if reg is None else variations.apply_variation(reg, jets)
        inside = ((varied.pt > 540) & (varied.pt < 660) & (varied.mass > 55)
                  & (varied.mass < 105))
        for label, sample in ((1, "W"), (0, "QCD")):
            n = int((inside & (varied.label == label)).sum())
            assert h[:, sample, variation].sum().value == n  # unit weights
    assert step.mass_window == (55.0, 105.0)
    assert AdversarialSystematics(OnnxWrapper(), mass_window=(55, 105)).region == Region(
        jet_mass=(55.0, 105.0))
    with pytest.raises(ConfigError, match="give one"):
        AdversarialSystematics(OnnxWrapper(), mass_window=(55, 105), region=box)
    with pytest.raises(ConfigError, match="mass_window"):
        AdversarialSystematics(OnnxWrapper(), mass_window=(105, 55))


def test_physics_systematic_as_in_a_run_configuration(jets: JetBatch) -> None:
    sub, w = jets[:300], OnnxWrapper()
    escale = physics_systematic("escale", "scale_all", shift=0.03)
    (up_label, up), (down_label, down) = escale.sides()
    assert (up_label, down_label) == ("escale_up", "escale_down")
    for shift, sign in ((up, 1.0), (down, -1.0)):
        expected = variations.apply_variation(shift.variation, sub, shift=sign * 0.03)
        assert np.array_equal(shift(sub, w).flat("pt"), expected.flat("pt"))
    smear = physics_systematic("smear", "smear_energy", seed=4, sigma=0.05)
    assert smear.down is None and smear.up == PhysicsShift("smear_energy", 4, {"sigma": 0.05})
    with pytest.raises(ConfigError, match="unknown option"):
        physics_systematic("t", "tracking_loss", sigma=0.1)


def test_run_configuration_systematics_in_the_step(jets: JetBatch, tmp_path: Path) -> None:
    """The systematics a run configuration builds are the step's: the same shifts and the
    same varied jets as in ``hepsafe run``; an attack shift is built by the factory once per
    tagger (wrapper or not), says what the attack did, and pickles without it."""
    from hepsafe.data.sample import SAMPLE_FILE
    from hepsafe.perturbation.shifts import AttackShift, apply_shift
    from hepsafe.pipeline import config

    doc = {"samples": [{"name": "W", "role": "signal", "files": [str(SAMPLE_FILE)]},
                       {"name": "QCD", "role": "background", "files": [str(SAMPLE_FILE)]}],
           "tagger": {"model": "pfn"}, "seed": 5, "output": str(tmp_path / "o"),
           "variations": [{"type": "scale_all", "name": "escale", "shift": 0.03}],
           "attacks": [{"type": "spsa", "name": "black", "steps": 1, "samples": 2}]}
    cfg = config.from_dict(doc, "run.yaml")
    sub, w = jets[:200], OnnxWrapper()
    values = AdversarialSystematics(w, cfg.systematics).evaluate(sub)
    assert set(values) == {"nominal", "escale_up", "escale_down", "black_up"}
    down = variations.apply_variation("scale_all_down", sub, seed=5, shift=-0.03)
    assert np.array_equal(values["escale_down"]["pt"], down.pt.astype(np.float32))
    black = cfg.systematics[1].up
    assert isinstance(black, AttackShift) and black.attack_for(w) is black.attack_for(w.tagger)
    shifted = apply_shift(black, sub, w)
    assert shifted.info is not None and shifted.info.name == "spsa"
    assert shifted.info.details["seed"] == 5 and shifted.info.details["steps"] == 1
    assert np.array_equal(values["black_up"]["pt"], shifted.jets.pt.astype(np.float32))
    assert not np.array_equal(shifted.jets.flat("pt"), sub.flat("pt"))
    copy = pickle.loads(pickle.dumps(black))
    assert copy == black and copy._built is None
    with pytest.raises(ConfigError, match="option 'attack'.*'cw'"):
        AttackShift("cw")
    with pytest.raises(ConfigError, match="'kind' must be one of"):
        Systematic("x", black, kind="adversarial")


def test_futures_executor_bit_identical(files, proc, reference) -> None:
    executor = processor.FuturesExecutor(workers=2, status=False, retries=0)
    assert _cells(_run(files, proc, executor, chunksize=1000)) == reference


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as c:
            yield c


def test_dask_executor_bit_identical(files, proc, reference, client) -> None:
    pids = set(client.run(lambda: __import__("os").getpid()).values())
    assert len(pids) == 2 and __import__("os").getpid() not in pids  # real worker processes
    assert _cells(_run(files, proc, "dask", chunksize=3333, client=client)) == reference


def test_apply_to_fileset_bit_identical(files, proc, reference, client) -> None:
    pytest.importorskip("dask_awkward")
    pytest.importorskip("dask_histogram")
    out, report = run_apply_to_fileset({"sample": {"files": {str(files["own"]): "jets"}}},
                                       proc, chunksize=1000, scheduler=client)
    assert report.complete
    assert _cells(out) == reference


def test_templates_and_fit(files, proc, reference) -> None:
    t = to_templates(_run(files, proc, chunksize=3333))
    ws = W.build_workspace(t, W.WorkspaceConfig(signal=("W",), data_sample=None))
    mods = {m["name"] for c in ws["channels"] for s in c["samples"] for m in s["modifiers"]}
    assert {"escale", "smear", "tracking"} <= mods


# --------------------------------------------------------------------------- NanoAOD
def test_pfnano_runs_through_the_step(files, jets: JetBatch) -> None:
    step = AdversarialSystematics(OnnxWrapper(), _systematics()[:2])
    out, report = run_fileset({"Wjets": [str(files["nano"])]}, AdversarialProcessor(step),
                              treename="Events", chunksize=150, schema=PFNanoAODSchema)
    assert report.complete and report.processed == {str(files["nano"]): 400}
    assert out["cutflow"] == {"Wjets": {"events": 400, "jets": 1200, "jets_selected": 1200}}
    h = out["templates"]["SR"]
    assert [str(s) for s in h.axes[1]] == ["Wjets"]
    assert h[:, "Wjets", "nominal"].sum().value == 1200
    # the same scores as reading the file with hepsafe.data.nanoaod and predicting
    expected = tagger.reference("pfn").predict(nanoaod.read_pfnano(files["nano"]))
    nominal = np.histogram(expected, bins=step.edges)[0]
    assert np.array_equal(h[:, "Wjets", "nominal"].values(), nominal)
    # attached per event x jet
    events = NanoEventsFactory.from_root({str(files["nano"]): "Events"},
                                         schemaclass=PFNanoAODSchema, mode="virtual").events()
    fat = step.attach(events.FatJet, step.table_of(events))
    assert ak.to_list(ak.num(fat.hepsafe_score, axis=1)) == [3] * 400
    assert np.array_equal(ak.to_numpy(ak.flatten(fat.hepsafe_score)), expected)
    assert ak.all(ak.num(fat.hepsafe_systematics.escale.up.score, axis=1) == 3)


def test_pfnano_ak4_collection(tmp_path: Path, jets: JetBatch) -> None:
    path = nanoaod.write_pfnano(jets[:90], tmp_path / "ak4.root", collection="Jet")
    events = NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema,
                                         mode="virtual").events()
    step = AdversarialSystematics(source=JetSource("pfnano", "Jet"))
    table = step.table_of(events)
    expected = tagger.reference("pfn").predict(nanoaod.read_pfnano(path, collection="Jet"))
    assert np.array_equal(ak.to_numpy(ak.flatten(table.nominal.score)), expected)


# --------------------------------------------------------------------------- PUPPI PFNano
#: jets of the PUPPI file without any candidate
NO_CANDIDATES = (5, 50, 301)


@pytest.fixture(scope="module")
def puppi_nano(tmp_path_factory, jets: JetBatch) -> Path:
    """600 jets, 3 per event, with PUPPI weights (some 0), pileup candidates, corrected
    jets, soft-drop masses; jets NO_CANDIDATES have no candidates at all."""
    batch, weight, raw_factor = puppi_batch(jets[:600], seed=2)
    empty = np.isin(np.arange(len(batch)), NO_CANDIDATES)
    keep = np.repeat(~empty, batch.n_parts)
    batch = batch.replace(parts=batch.parts[ak.unflatten(keep, batch.n_parts)])
    return nanoaod.write_pfnano(batch, tmp_path_factory.mktemp("puppi") / "puppi.root", 3,
                                puppi_weight=weight[keep], raw_factor=raw_factor)


def _nano_events(path: Path, mode: str = "virtual"):
    return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema,
                                       mode=mode).events()


def test_wrapper_on_raw_nanoevents_pf_candidates(puppi_nano: Path) -> None:
    """NanoEvents PFCands (energy only a behaviour) and the FatJetPFCands records per jet
    are scored as the step's own jets: PUPPI-weighted by default, unweighted on request."""
    events = _nano_events(puppi_nano)
    assert "energy" not in events.PFCands.fields
    pfn = tagger.reference("pfn")
    weighted = pfn.predict(nanoaod.read_pfnano(puppi_nano))
    plain = pfn.predict(nanoaod.read_pfnano(puppi_nano, puppi=False))
    assert not np.array_equal(weighted, plain)
    for parts in (events.FatJet.constituents.pf, events.FatJet.constituents):
        got = OnnxWrapper()(parts)
        assert ak.to_list(ak.num(got, axis=1)) == [3] * 200
        assert np.array_equal(ak.to_numpy(ak.flatten(got)), weighted)
        unweighted = OnnxWrapper(puppi=False)(parts)
        assert np.array_equal(ak.to_numpy(ak.flatten(unweighted)), plain)
    cands = pf_constituents(events.FatJet.constituents.pf)
    assert set(cands.fields) == {"pt", "eta", "phi", "energy", "charge", "pid"}
    assert ak.all(ak.num(cands, axis=2)[:, 1] == ak.num(cands, axis=2)[:, 1])
    with pytest.raises(InputError, match="'puppiWeight'.*'puppi'"):
        pf_constituents(ak.without_field(events.FatJet.constituents.pf, "puppiWeight"))


def test_pfnano_puppi_step_iterative_equals_futures(puppi_nano: Path) -> None:
    """The step on PUPPI PFNano with a soft-drop region: iterative and futures executors,
    different chunkings, the same histograms bit for bit; the nominal template holds the
    file's jets in the box; jets without candidates are left alone by every shift."""
    syst = [Systematic("escale", PhysicsShift("scale_all_up"), PhysicsShift("scale_all_down"))]
    if HAS_ADVERSARY:
        syst.append(Systematic("adversary", LearnedShift()))
    box = Region(jet_msoftdrop=(30.0, 100.0))
    proc_ = AdversarialProcessor(AdversarialSystematics(OnnxWrapper(), syst, region=box))
    runs = []
    for executor, chunksize in (("iterative", 100),
                                (processor.FuturesExecutor(workers=2, status=False,
                                                           retries=0), 70)):
        out, report = run_fileset({"nano": [str(puppi_nano)]}, proc_, executor,
                                  treename="Events", chunksize=chunksize, schema=PFNanoAODSchema)
        assert report.complete
        runs.append(_cells(out))
    assert runs[0] == runs[1]
    jets = nanoaod.read_pfnano(puppi_nano)
    inside = box.mask(jets)
    assert 0 < inside.mean() < 1
    expected = np.histogram(tagger.reference("pfn").predict(jets[inside]),
                            bins=proc_.step.edges)[0]
    h = out["templates"]["SR"]
    assert np.array_equal(h[:, "nano", "nominal"].values(), expected)
    # per jet: soft-drop mass in the table, jets without candidates unchanged everywhere
    table = ak.flatten(proc_.step.table_of(_nano_events(puppi_nano)))
    empty = list(NO_CANDIDATES)
    assert np.array_equal(ak.to_numpy(table.nominal.msoftdrop), jets.msoftdrop)
    for name in table.systematics.fields:
        for side in ("up", "down"):
            rec = table.systematics[name][side]
            for k in ("pt", "mass", "msoftdrop", "score"):
                assert np.array_equal(ak.to_numpy(rec[k])[empty],
                                      ak.to_numpy(table.nominal[k])[empty]), (name, side, k)
        up = ak.to_numpy(table.systematics[name].up.score)
        assert not np.array_equal(up, ak.to_numpy(table.nominal.score)), name


# --------------------------------------------------------------------------- bad files
def test_bad_files_skipped_with_report(files, proc, reference) -> None:
    names = [str(files[k]) for k in ("own", "garbage", "missing", "corrupt")]
    with pytest.warns(SkippedFilesWarning, match="garbage.root"):
        out, report = run_fileset({"sample": names}, proc, treename="jets", chunksize=3000,
                                  skipbadfiles=True)
    assert not report.complete
    assert set(report.skipped) == set(names[1:])
    assert "not a ROOT file" in report.skipped[names[1]]
    assert "No such file" in report.skipped[names[2]]
    assert "entries 0:3000 failed" in report.skipped[names[3]]
    assert report.processed == {names[0]: N_JETS}
    assert "SKIPPED" in report.summary()
    assert _cells(out) == reference  # what was processed is complete and exact


@pytest.mark.parametrize("bad", ["garbage", "missing", "corrupt"])
def test_bad_file_stops_with_clear_error(files, proc, bad: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InputError, match=f"{bad}.root.*skipbadfiles=True"):
            run_fileset({"sample": [str(files["own"]), str(files[bad])]}, proc,
                        treename="jets", chunksize=3000)


def test_learned_adversary_is_chunk_invariant(jets: JetBatch) -> None:
    if not HAS_ADVERSARY:
        pytest.skip("no learned adversary model in hepsafe/models")
    shift, w = LearnedShift(), OnnxWrapper()
    sub = jets[:1100]
    whole = shift(sub, w)
    parts = JetBatch.concatenate([shift(sub[i : i + 257], w) for i in range(0, 1100, 257)])
    assert np.array_equal(whole.flat("pt"), parts.flat("pt"))
    assert np.array_equal(w.score(whole.parts), w.score(parts.parts))
    assert not np.array_equal(whole.flat("pt"), sub.flat("pt"))
    # the step hands over the tagger's inputs of the nominal jets: reused, same result
    inputs = w.inputs_of(sub.parts)
    assert w.constituent_input(shift.adversary.features, shift.adversary.n_max) is not None
    reused = shift.vary(sub, w, inputs)
    for f in ("pt", "eta", "phi", "energy"):
        assert np.array_equal(reused.flat(f), whole.flat(f))
    assert np.array_equal(w.score_inputs(inputs), w.score(sub.parts))
    # a tagger whose inputs do not match (jet features only) is not reused, same result
    hl = OnnxWrapper(MODELS_DIR / "hl.onnx")
    assert hl.constituent_input(shift.adversary.features, shift.adversary.n_max) is None
    assert np.array_equal(shift.vary(sub, hl, hl.inputs_of(sub.parts)).flat("pt"),
                          whole.flat("pt"))


def test_apply_to_fileset_bad_files(files, proc) -> None:
    pytest.importorskip("dask_awkward")
    pytest.importorskip("dask_histogram")
    names = [str(files[k]) for k in ("own", "garbage", "missing", "corrupt")]
    fileset = {"sample": {"files": {n: "jets" for n in names}}}
    with pytest.warns(SkippedFilesWarning, match="corrupt.root"):
        out, report = run_apply_to_fileset(fileset, proc, chunksize=3000, skipbadfiles=True,
                                           scheduler="sync")
    assert set(report.skipped) == set(names[1:]) and report.processed == {names[0]: N_JETS}
    assert out["cutflow"]["sample"]["jets"] == N_JETS
    for bad in names[1:]:
        with pytest.raises(InputError, match=Path(bad).name):
            run_apply_to_fileset({"sample": {"files": {names[0]: "jets", bad: "jets"}}}, proc,
                                 chunksize=3000, scheduler="sync")


def test_step_attaches_anomaly_scores(files, jets: JetBatch) -> None:
    """With an anomaly scorer the step attaches the nominal jets' anomaly scores, the same
    as the scorer on the batch; the scorer pickles without its ONNX Runtime session and the
    futures executor gives the same histograms."""
    import pickle

    from hepsafe.anomaly import AnomalyScorer
    from hepsafe.models import MODELS_DIR

    scorer = AnomalyScorer.fit(MODELS_DIR / "pfn3.onnx", jets[jets.label <= 2][::5])
    assert pickle.loads(pickle.dumps(scorer))._tagger is None
    step = AdversarialSystematics(OnnxWrapper(), anomaly=scorer)
    events = NanoEventsFactory.from_root({str(files["own"]): "jets"}, schemaclass=BaseSchema,
                                         mode="virtual", entry_stop=300).events()
    source = step.source_of(events)
    out = step.attach(source.jets(events), step.table_of(events))
    got = out["hepsafe_anomaly"]
    assert set(got.fields) == {"msp", "entropy", "max_logit", "energy", "mahalanobis"}
    want = scorer(source.batch(source.columns(events)))
    for name, values in want.items():
        assert np.array_equal(ak.to_numpy(got[name]), values), name
    proc = AdversarialProcessor(step)
    a = _cells(_run(files, proc))
    b = _cells(_run(files, proc, "futures", chunksize=2000, workers=2))
    assert a == b
