"""Templates: hist axes, yields, exact ROOT/JSON round trips, bad input, hygiene."""

from __future__ import annotations

import json
import warnings

import hist
import numpy as np
import pytest
import uproot
from hypothesis import given, settings
from hypothesis import strategies as st
from template_helpers import mass_templates

from hepsafe.data.jets import JetBatch
from hepsafe.exceptions import TemplateError, TemplateWarning
from hepsafe.templates import booking as T
from hepsafe.templates import files as templates_io
from hepsafe.templates import hygiene as hygiene

EDGES = np.linspace(40.0, 200.0, 7)  # jet mass [GeV], 6 bins


def _mass_templates(jets: JetBatch) -> T.Templates:
    """Shared jet-mass templates (tests/template_helpers.py)."""
    return mass_templates(jets, EDGES)


@pytest.fixture(scope="module")
def tmpl(sample: JetBatch) -> T.Templates:
    return _mass_templates(sample)


def _assert_same(a: T.Templates, b: T.Templates) -> None:
    assert a.regions == b.regions
    for r in a.regions:
        assert np.array_equal(a.edges(r), b.edges(r))
        assert a.observable(r) == b.observable(r)
        assert a.sample_axis(r) == b.sample_axis(r)
        assert a.variation_axis(r) == b.variation_axis(r)
        assert a.hists[r] == b.hists[r]
    assert list(a.cells()) == list(b.cells())
    for c in a.cells():
        assert np.array_equal(a.values(*c), b.values(*c))
        assert np.array_equal(a.variances(*c), b.variances(*c))


# ------------------------------------------------------------------ structure
def test_axes_storage_and_growth(tmpl: T.Templates) -> None:
    h = tmpl.hists["lowpt"]
    obs, samp, var = h.axes
    assert obs.name == "mass" and obs.label == "jet mass [GeV]"
    assert np.array_equal(obs.edges, EDGES)
    assert isinstance(samp, hist.axis.StrCategory) and samp.name == "sample"
    assert isinstance(var, hist.axis.StrCategory) and var.traits.growth
    assert issubclass(h.storage_type, hist.storage.Weight)
    assert list(var) == ["nominal", "tilt_up", "tilt_down", "wnorm_up"]
    assert tmpl.samples("lowpt") == ["W", "QCD"]
    assert tmpl.variations("lowpt", "QCD") == ["nominal", "tilt_up", "tilt_down"]
    assert tmpl.systematics() == ["tilt", "wnorm"]


def test_fill_returns_new_hist_and_counts_edges() -> None:
    h = T.book([0.0, 0.5, 1.0], observable="score")
    h2 = T.fill(h, np.array([0.0, 0.2, 0.7, 1.0, 1.5, -0.1]), "sig", weight=2.0)
    assert h.sum().value == 0  # input untouched
    assert h2[:, "sig", "nominal"].values().tolist() == [4.0, 4.0]  # 1.0 in last bin; out dropped
    h3 = T.fill(h, np.array([1.5, -0.1]), "sig", clip=True)
    assert h3[:, "sig", "nominal"].values().tolist() == [1.0, 1.0]
    with pytest.raises(TemplateError, match="non-finite"):
        T.fill(h, np.array([np.nan]), "sig")
    with pytest.raises(TemplateError, match="jes_sideways"):
        T.fill(h, np.array([0.1]), "sig", "jes_sideways")


def test_yields_table(tmpl: T.Templates, sample: JetBatch) -> None:
    rows = {(r["region"], r["sample"], r["variation"]): r for r in T.yields_table(tmpl)}
    sel = (sample.pt < 580) & (sample.label == 1) & (sample.mass >= 40) & (sample.mass <= 200)
    row = rows[("lowpt", "W", "nominal")]
    assert row["yield"] == pytest.approx(0.05 * sel.sum())
    assert row["stat_error"] == pytest.approx(0.05 * np.sqrt(sel.sum()))
    assert rows[("lowpt", "W", "wnorm_up")]["yield"] == pytest.approx(1.1 * row["yield"])
    assert ("lowpt", "QCD", "wnorm_up") not in rows  # never filled: absent
    text = T.format_yields(tmpl)
    assert "wnorm_up" in text and "10.00" in text


# ------------------------------------------------------------------ I/O
def test_root_round_trip_exact_with_cabinetry_names(tmpl: T.Templates, tmp_path) -> None:
    path = templates_io.write_templates(tmpl, tmp_path / "t.root")
    with uproot.open(path) as f:
        names = set(f.keys(cycle=False))
        assert "lowpt_W_nominal" in names and "highpt_QCD_tilt_down" in names
        assert "lowpt_QCD_wnorm_up" not in names
        h = f["lowpt_W_tilt_up"]
        assert np.array_equal(h.values(), tmpl.values("lowpt", "W", "tilt_up"))
        assert np.array_equal(h.variances(), tmpl.variances("lowpt", "W", "tilt_up"))
    _assert_same(tmpl, templates_io.read_templates(path))
    assert [p.name for p in tmp_path.iterdir()] == ["t.root"]  # no temporary left


def test_json_round_trip_exact(tmpl: T.Templates, tmp_path) -> None:
    path = templates_io.write_templates(tmpl, tmp_path / "t.json")
    d = json.loads(path.read_text())
    assert d["format"] == "hepsafe-templates/1"
    _assert_same(tmpl, templates_io.read_templates(path))


def test_foreign_root_file_read_by_name(tmpl: T.Templates, tmp_path) -> None:
    path = tmp_path / "foreign.root"
    with uproot.recreate(path) as f:
        for r, s, v in tmpl.cells():
            f[f"{r}_{s}_{v}"] = tmpl.hist1d(r, s, v)
    with pytest.raises(TemplateError, match="region and sample names"):
        templates_io.read_root_templates(path)
    back = templates_io.read_root_templates(path, regions=["lowpt", "highpt"], samples=["W", "QCD"])
    assert list(back.cells()) == list(tmpl.cells())
    for c in tmpl.cells():
        assert np.array_equal(back.values(*c), tmpl.values(*c))


def test_write_failure_leaves_old_file(tmpl: T.Templates, tmp_path) -> None:
    path = templates_io.write_templates(tmpl, tmp_path / "t.json")
    before = path.read_bytes()

    class Boom(T.Templates):
        def cells(self):  # type: ignore[override]
            raise RuntimeError("disk full")

    bad = Boom(tmpl.hists)
    with pytest.raises(RuntimeError):
        templates_io.write_root_templates(bad, tmp_path / "t.json")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.json"]


# ------------------------------------------------------------------ bad input
def test_binning_mismatch_names_both() -> None:
    nom = hist.Hist(hist.axis.Variable([0, 1, 2, 3]), storage=hist.storage.Weight())
    var = hist.Hist(hist.axis.Variable([0, 1, 2.5, 3]), storage=hist.storage.Weight())
    nom.fill([0.5, 1.5, 2.5])
    var.fill([0.5, 1.5, 2.5])
    with pytest.raises(TemplateError) as err:
        T.from_cells({("SR", "W", "nominal"): nom, ("SR", "W", "jes_up"): var})
    assert "SR_W_jes_up" in str(err.value) and "SR_W_nominal" in str(err.value)


def test_binning_mismatch_in_root_file(tmp_path) -> None:
    path = tmp_path / "bad.root"
    nom = hist.Hist(hist.axis.Variable([0, 1, 2]), storage=hist.storage.Weight())
    var = hist.Hist(hist.axis.Variable([0, 1, 2, 3]), storage=hist.storage.Weight())
    nom.fill([0.5, 1.5])
    var.fill([0.5, 1.5])
    with uproot.recreate(path) as f:
        f["SR_W_nominal"] = nom
        f["SR_W_jes_up"] = var
    with pytest.raises(TemplateError, match="SR_W_jes_up.*SR_W_nominal"):
        templates_io.read_root_templates(path, regions=["SR"], samples=["W"])


def test_missing_nominal() -> None:
    e, v = [0.0, 1.0, 2.0], [1.0, 2.0]
    with pytest.raises(TemplateError, match="missing nominal.*SR_W_nominal"):
        T.from_arrays({("SR", "W", "jes_up"): (e, v, v), ("SR", "B", "nominal"): (e, v, v)})
    h = T.fill(T.book(e), np.array([0.5]), "W", "jes_up")
    h = T.fill(h, np.array([0.5]), "B")
    with pytest.raises(TemplateError, match="missing nominal.*SR_W_nominal"):
        hygiene.check(T.Templates({"SR": h}))


def test_zero_and_negative_yields() -> None:
    e = [0.0, 1.0, 2.0]
    t = T.from_arrays(
        {
            ("SR", "W", "nominal"): (e, [1.0, -1.0], [1.0, 1.0]),
            ("SR", "B", "nominal"): (e, [2.0, 3.0], [2.0, 3.0]),
            ("SR", "B", "jes_up"): (e, [-2.0, 1.0], [2.0, 1.0]),
        }
    )
    with pytest.raises(TemplateError, match="SR_W_nominal has total yield 0"):
        hygiene.check(t)
    with pytest.warns(TemplateWarning, match=r"SR_W_nominal bins \[1\].*SR_B_jes_up bins \[0\]"):
        clipped = hygiene.clip_negative(t)
    assert clipped.values("SR", "W").tolist() == [1.0, 0.0]
    assert t.values("SR", "W").tolist() == [1.0, -1.0]  # input untouched


def test_names_and_schema_errors(tmpl: T.Templates) -> None:
    with pytest.raises(TemplateError, match="region name"):
        T.Templates({"bad region": tmpl.hists["lowpt"]})
    d = templates_io.to_dict(tmpl)
    d["regions"][0]["edges"] = "oops"
    with pytest.raises(TemplateError, match="regions/0/edges"):
        templates_io.from_dict(d)
    d = templates_io.to_dict(tmpl)
    d["regions"][0]["cells"][0]["values"] = [1.0, 2.0]
    with pytest.raises(TemplateError, match="binning differs"):
        templates_io.from_dict(d)
    with pytest.raises(TemplateError, match="no template lowpt_QCD_wnorm_up"):
        tmpl.values("lowpt", "QCD", "wnorm_up")


# ------------------------------------------------------------------ hygiene
def test_symmetrize_one_sided(tmpl: T.Templates) -> None:
    sym = hygiene.symmetrize(tmpl)
    nom = tmpl.values("lowpt", "W")
    up = tmpl.values("lowpt", "W", "wnorm_up")
    assert np.allclose(sym.values("lowpt", "W", "wnorm_down"), 2 * nom - up)
    both = ("lowpt", "W", "tilt_down")
    assert np.array_equal(sym.values(*both), tmpl.values(*both))
    assert "wnorm_down" not in tmpl.variations("lowpt", "W")  # input untouched
    assert sym.variation_axis("lowpt") == [
        "nominal",
        "tilt_up",
        "tilt_down",
        "wnorm_up",
        "wnorm_down",
    ]
    assert not sym.has("lowpt", "QCD", "wnorm_down")


def test_smooth_keeps_totals_and_flat_ratios(tmpl: T.Templates) -> None:
    sm = hygiene.smooth(tmpl, passes=2)
    for r, s, v in tmpl.cells():
        assert sm.values(r, s, v).sum() == pytest.approx(tmpl.values(r, s, v).sum())
    # a flat 10% normalisation change stays flat
    assert np.allclose(sm.values("lowpt", "W", "wnorm_up"), tmpl.values("lowpt", "W", "wnorm_up"))
    noisy = np.array([10.0, 14.0, 8.0, 13.0, 9.0])
    out = hygiene.smooth_ratio(np.full(5, 10.0), noisy)
    assert np.std(out) < np.std(noisy) and out.sum() == pytest.approx(noisy.sum())


def test_merge_low_stat(tmpl: T.Templates) -> None:
    merged = hygiene.merge_low_stat(tmpl, max_rel_error=0.05)
    for r in merged.regions:
        assert len(merged.edges(r)) < len(tmpl.edges(r))
        assert set(merged.edges(r)) <= set(tmpl.edges(r))
        tot = sum(merged.values(r, s) for s in merged.samples(r))
        var = sum(merged.variances(r, s) for s in merged.samples(r))
        assert np.all(np.sqrt(var) <= 0.05 * tot)
        for s in merged.samples(r):
            for v in merged.variations(r, s):
                assert merged.values(r, s, v).sum() == pytest.approx(tmpl.values(r, s, v).sum())


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.0, 50.0), min_size=1, max_size=20),
    st.floats(0.05, 1.0),
)
def test_merge_plan_properties(values: list[float], thr: float) -> None:
    v = np.array(values)
    keep = hygiene.merge_plan(v, v, thr)  # Poisson-like: variance = value
    assert keep[0] == 0 and keep[-1] == len(v) and np.all(np.diff(keep) > 0)
    groups = np.add.reduceat(v, keep[:-1])
    assert groups.sum() == pytest.approx(v.sum())
    if len(groups) > 1:  # all but possibly the last merged group meet the threshold
        ok = np.sqrt(groups[:-1]) <= thr * groups[:-1] + 1e-12
        assert ok.all()


def test_from_cells_accepts_plain_hist() -> None:
    h = hist.Hist(hist.axis.Regular(2, 0, 2))
    h.fill([0.5, 1.5, 1.5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = T.from_cells({("SR", "B", "nominal"): h})
    assert t.values("SR", "B").tolist() == [1.0, 2.0]
    assert t.variances("SR", "B").tolist() == [1.0, 2.0]
