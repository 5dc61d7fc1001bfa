"""Envelope: bounds per particle class, validation, JSON round trip against its schema."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hepsafe.exceptions import EnvelopeError, InputError
from hepsafe.perturbation.envelope import PARTICLE_CLASSES, Envelope, particle_classes


def test_defaults_and_table():
    env = Envelope()
    assert (env.pt, env.eta, env.phi) == (0.02, 0.02, 0.02)
    assert env.mass_tol == 0.01 and env.min_pt == 0.0
    t = env.table()
    assert t.shape == (4, 3) and t.dtype == np.float64 and np.all(t == 0.02)
    assert env.is_uniform


def test_per_class_overrides():
    env = Envelope(classes={"photon": {"pt": 0.05}, "neutral_hadron": {"eta": 0.04, "phi": 0.03}})
    assert env.bound("photon", "pt") == 0.05
    assert env.bound("photon", "eta") == 0.02
    assert env.bound("neutral_hadron", "phi") == 0.03
    t = env.table()
    assert t[PARTICLE_CLASSES.index("photon"), 0] == 0.05
    assert t[PARTICLE_CLASSES.index("charged_hadron")].tolist() == [0.02, 0.02, 0.02]
    assert not env.is_uniform


def test_scaled_and_uniform():
    env = Envelope(classes={"photon": {"pt": 0.04}}, mass_tol=0.02)
    half = env.scaled(0.5)
    assert half.pt == 0.01 and half.bound("photon", "pt") == 0.02 and half.mass_tol == 0.02
    assert env.pt == 0.02  # unchanged
    u = Envelope.uniform(0.005, min_pt=1.0)
    assert (u.pt, u.eta, u.phi, u.min_pt) == (0.005, 0.005, 0.005, 1.0)
    with pytest.raises(EnvelopeError, match="'pt'"):
        env.scaled(60.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pt": -0.1}, "'pt'"),
        ({"pt": 1.0}, "'pt'.*< 1"),
        ({"eta": float("nan")}, "'eta'"),
        ({"phi": 4.0}, "'phi'"),
        ({"classes": {"gluon": {"pt": 0.1}}}, "classes/gluon"),
        ({"classes": {"photon": {"mass": 0.1}}}, "classes/photon"),
        ({"classes": {"photon": {"pt": -1}}}, "classes/photon/pt"),
        ({"mass_tol": -0.01}, "'mass_tol'"),
        ({"min_pt": "x"}, "'min_pt'"),
    ],
)
def test_invalid_envelopes_name_the_field(kwargs, match):
    with pytest.raises(EnvelopeError, match=match):
        Envelope(**kwargs)


def test_json_round_trip(tmp_path):
    env = Envelope(pt=0.03, classes={"lepton": {"pt": 0.01, "phi": 0.001}}, pt_tol=0.002,
                   mass_tol=0.015, mass_atol=0.2, min_pt=1.0)
    text = env.to_json(tmp_path / "env.json")
    assert Envelope.from_json(text) == env
    assert Envelope.from_json(tmp_path / "env.json") == env
    assert json.loads(text)["format"] == "hepsafe-envelope/1"


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({"format": "hepsafe-envelope/1"}, "bounds"),
        ({"format": "hepsafe-envelope/1", "bounds": {"pt": 2}}, "bounds/pt"),
        ({"format": "hepsafe-envelope/1", "bounds": {}, "classes": {"quark": {}}}, "classes"),
        ({"format": "other", "bounds": {}}, "format"),
        ({"format": "hepsafe-envelope/1", "bounds": {}, "min_pt": -1}, "min_pt"),
    ],
)
def test_schema_errors_name_the_key(doc, match):
    with pytest.raises(EnvelopeError, match=match):
        Envelope.from_dict(doc)


def test_from_json_errors(tmp_path):
    with pytest.raises(EnvelopeError, match="no such"):
        Envelope.from_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(EnvelopeError, match="not valid JSON"):
        Envelope.from_json(bad)


def test_particle_classes():
    pid = np.array([211, -211, 130, 22, 11, -13, 2112, 321])
    charge = np.array([1, -1, 0, 0, -1, 1, 0, 1])
    codes = particle_classes(pid, charge)
    names = [PARTICLE_CLASSES[c] for c in codes]
    assert names == ["charged_hadron", "charged_hadron", "neutral_hadron", "photon", "lepton",
                     "lepton", "neutral_hadron", "charged_hadron"]
    assert codes.dtype == np.int8
    assert list(particle_classes(None, charge)) == [0, 0, 1, 1, 0, 0, 1, 0]
    assert list(particle_classes(pid, None)[:4]) == [0, 0, 1, 2]
    with pytest.raises(InputError, match="pid"):
        particle_classes(None, None)


def test_sample_classes(sample):
    codes = particle_classes(sample.flat("pid"), sample.flat("charge"))
    counts = np.bincount(codes, minlength=4)
    assert np.all(counts > 0)
    assert counts[PARTICLE_CLASSES.index("photon")] == np.sum(sample.flat("pid") == 22)
