"""Pythia8 + FastJet generation of a jet sample with a parametric particle-flow response.

Needs the ``generate`` extra (``pythia8mc``, ``fastjet``); loading the shipped sample needs
neither."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np

from hepsafe._files import sha256sum, write_json
from hepsafe._versions import package_versions
from hepsafe.data.jets import CLASS_NAMES, JetBatch, write_root
from hepsafe.data.sample import LABELS, TEST_FRACTION, _splitmix64, is_test
from hepsafe.exceptions import ConfigError, InputError

# --------------------------------------------------------------------------- generation


@dataclass(frozen=True)
class GenConfig:
    """Generator settings. Energies and momenta in GeV."""

    ecm: float = 13000.0
    jet_r: float = 0.8
    jet_pt_min: float = 500.0
    jet_pt_max: float = 700.0
    jet_abs_eta_max: float = 2.0
    match_dr: float = 0.6
    pthat_min: float = 450.0
    pthat_max: float = 800.0
    part_pt_min: float = 1.0
    block_jets: int = 250
    #: extra Pythia settings applied to every process after its own ones, e.g.
    #: ``("TimeShower:alphaSvalue = 0.120",)`` for an alternative final-state shower
    pythia: tuple[str, ...] = ()


PROCESS_SETTINGS: dict[str, list[str]] = {
    "qcd": ["HardQCD:all = on"],
    "w": [
        "WeakBosonAndParton:qqbar2Wg = on",
        "WeakBosonAndParton:qg2Wq = on",
        "24:onMode = off",
        "24:onIfAny = 1 2 3 4 5",
    ],
    "top": [
        "Top:gg2ttbar = on",
        "Top:qqbar2ttbar = on",
        "24:onMode = off",
        "24:onIfAny = 1 2 3 4 5",
    ],
}


def _heavy_higgs_to_hh(m_h: float) -> list[str]:
    """A heavy neutral Higgs H (PDG 35) of 174 GeV produced with a jet, decaying to two light
    Higgs bosons h (PDG 25) of mass ``m_h`` [GeV] (narrow, window +-5 GeV), h -> q qbar."""
    return [
        "Higgs:useBSM = on",
        "HiggsBSM:gg2H2g(l:t) = on",
        "HiggsBSM:qg2H2q(l:t) = on",
        "HiggsBSM:qqbar2H2g(l:t) = on",
        "35:m0 = 174", "35:mWidth = 1", "35:mMin = 164", "35:mMax = 184",
        "35:onMode = off", "35:onIfMatch = 25 25",
        f"25:m0 = {m_h:g}", "25:mWidth = 0.01",
        f"25:mMin = {m_h - 5:g}", f"25:mMax = {m_h + 5:g}",
        "25:onMode = off", "25:onIfAny = 1 2 3 4 5",
    ]


#: out-of-distribution processes (no tagger trains on them; docs/DATA.md): H(174) -> hh with
#: h at 20 and 80 GeV, and a top quark (174 GeV window) decaying through a 20 GeV "W"
OOD_PROCESS_SETTINGS: dict[str, list[str]] = {
    "hh20": _heavy_higgs_to_hh(20.0),
    "hh80": _heavy_higgs_to_hh(80.0),
    "top_w20": [
        "Top:gg2ttbar = on",
        "Top:qqbar2ttbar = on",
        "6:mMin = 164", "6:mMax = 184",
        "24:m0 = 20", "24:mMin = 15", "24:mMax = 25",
        "24:onMode = off",
        "24:onIfAny = 1 2 3 4 5",
    ],
}
PROCESS_SETTINGS.update(OOD_PROCESS_SETTINGS)
#: the truth particle a jet of each signal-like process is matched to (PDG id)
MATCH_ID = {"w": 24, "top": 6, "hh20": 35, "hh80": 35, "top_w20": 6}

# Particle-flow class codes written to part_pid (as CMS PF candidates): the generator's
# identity is replaced by what a detector would reconstruct.
PF_CHARGED_HADRON, PF_NEUTRAL_HADRON, PF_PHOTON, PF_ELECTRON, PF_MUON = 211, 130, 22, 11, 13

# Calorimeter cell sizes (eta x phi); phi cells divide 2 pi exactly.
ECAL_CELL = (0.0174, 2 * np.pi / 360)
HCAL_CELL = (0.087, 2 * np.pi / 72)


def _cells(
    eta: np.ndarray, phi: np.ndarray, cell: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Calorimeter cell indices ``(i_eta, i_phi)`` of directions ``(eta, phi)``, int64."""
    n_phi = int(round(2 * np.pi / cell[1]))
    i_eta = np.floor(eta / cell[0]).astype(np.int64)
    i_phi = np.floor((phi + np.pi) / cell[1]).astype(np.int64) % n_phi
    return i_eta, i_phi


def merge_cells(
    e: np.ndarray, eta: np.ndarray, phi: np.ndarray, calo: np.ndarray
) -> dict[str, np.ndarray]:
    """Sum the energies of neutral particles that hit the same calorimeter cell.

    ``e`` [GeV], ``eta``, ``phi`` [rad] and ``calo`` (0 ECAL, 1 HCAL) have shape ``(n,)``.
    Returns one cluster per hit cell, arrays ``(n_cells,)``: ``energy`` (the summed true
    energy), ``eta`` and ``phi`` (the cell centre) and ``calo``, ordered by (calo, i_eta,
    i_phi). A calorimeter measures a cell's deposit, not the particles in it: two photons
    in one ECAL crystal are one cluster. An HCAL tower spans 5 x 5 ECAL crystals, so the
    centre of its middle crystal is the tower's centre: an ECAL deposit there, in a tower
    that holds a neutral hadron, is counted in that hadron's cluster (one shower, as
    particle flow links an ECAL cluster to the HCAL cluster behind it), so no two
    clusters ever share a position.
    """
    n_phi = [int(round(2 * np.pi / c[1])) for c in (ECAL_CELL, HCAL_CELL)]
    ratio = n_phi[0] // n_phi[1]  # ECAL crystals per HCAL tower, in phi and in eta (5)
    ecal = calo == 0
    ie, ip = _cells(eta, phi, ECAL_CELL)
    he, hp = _cells(eta, phi, HCAL_CELL)
    ce, cp = np.where(ecal, ie, he), np.where(ecal, ip, hp)

    def key(c: np.ndarray, i_eta: np.ndarray, i_phi: np.ndarray) -> np.ndarray:
        # unique per (calo, i_eta, i_phi): |i_eta| < 500, i_phi < 1000
        out: np.ndarray = (c * 1000 + (i_eta + 500)) * 1000 + i_phi
        return out

    keys = key(calo.astype(np.int64), ce, cp)
    # an ECAL deposit in the middle crystal of a tower that holds a neutral hadron joins it
    middle = ecal & (ie % ratio == ratio // 2) & (ip % ratio == ratio // 2)
    tower = key(np.ones_like(ce), np.floor_divide(ie, ratio), np.floor_divide(ip, ratio))
    joins = middle & np.isin(tower, keys[~ecal])
    keys = np.where(joins, tower, keys)
    uniq, inverse = np.unique(keys, return_inverse=True)
    energy = np.bincount(inverse, weights=e, minlength=len(uniq))
    c_out = uniq // 1_000_000
    i_eta = (uniq // 1000) % 1000 - 500
    i_phi = uniq % 1000
    size = np.where(c_out == 0, ECAL_CELL[0], HCAL_CELL[0])
    dphi = np.where(c_out == 0, ECAL_CELL[1], HCAL_CELL[1])
    return {"energy": energy, "eta": (i_eta + 0.5) * size, "phi": (i_phi + 0.5) * dphi - np.pi,
            "calo": c_out}


def detector_response(
    px: np.ndarray,
    py: np.ndarray,
    pz: np.ndarray,
    e: np.ndarray,
    pid: np.ndarray,
    charge: np.ndarray,
    rng: np.random.Generator,
    pt_min: float = 1.0,
) -> dict[str, np.ndarray]:
    """A simple parametric particle-flow response for visible final-state particles.

    Input arrays have shape ``(n,)`` (GeV); returns PF candidates (pt, eta, phi, energy,
    charge, pid) after acceptance, cell merging and thresholds. The choices and their
    reasons:

    - Charged particles (|eta| < 2.5, the tracker) keep their direction, which tracking
      measures far better than any jet-substructure scale; their pT is smeared by
      ``sigma/pT = 0.5 % (+) 0.015 %/GeV * pT``: multiple scattering at low pT, sagitta
      resolution growing linearly at high pT. Electrons and muons keep their PF class.
    - Photons (|eta| < 3) deposit in ECAL cells (0.0174 x 2 pi/360), neutral hadrons
      (|eta| < 3) in HCAL cells (0.087 x 2 pi/72), much coarser: the neutral angular
      granularity is what limits neutral constituents in a real detector. The energies in
      one cell are summed (:func:`merge_cells`), as a calorimeter clusters; each cell is
      one candidate at the cell centre, massless, a photon (ECAL) or a neutral hadron
      (HCAL), with the cell's energy smeared by ``sigma/E = 5 %/sqrt(E) (+) 1 %`` (ECAL)
      or ``100 %/sqrt(E) (+) 5 %`` (HCAL).
    - Every candidate needs ``pT > pt_min`` (default 1 GeV), the order of PF reconstruction
      thresholds; below it candidates are lost.
    """
    pt_true = np.hypot(px, py)
    p_true = np.sqrt(pt_true**2 + pz**2)
    eta = np.arcsinh(np.divide(pz, pt_true, out=np.zeros_like(pz), where=pt_true > 0))
    phi = np.arctan2(py, px)
    m2 = np.maximum(e**2 - p_true**2, 0.0)
    charged = (charge != 0) & (np.abs(eta) < 2.5)
    neutral = (charge == 0) & (np.abs(eta) < 3.0)
    apid = np.abs(pid)

    cells = merge_cells(e[neutral], eta[neutral], phi[neutral],
                        np.where(pid[neutral] == 22, 0, 1))
    n_ch, n_cell = int(charged.sum()), len(cells["energy"])
    z = rng.standard_normal(n_ch + n_cell)

    # charged: momentum smeared, mass kept
    sig_trk = np.hypot(0.005, 1.5e-4 * pt_true[charged])
    s_ch = np.maximum(1 + sig_trk * z[:n_ch], 0.0)
    ch_pt = pt_true[charged] * s_ch
    ch_e = np.sqrt((p_true[charged] * s_ch) ** 2 + m2[charged])
    ch_pid = np.full(n_ch, PF_CHARGED_HADRON, dtype=np.int32)
    ch_pid[apid[charged] == 11] = PF_ELECTRON
    ch_pid[apid[charged] == 13] = PF_MUON
    ch_q = np.sign(charge[charged])
    ch_pid = ch_pid * ch_q.astype(np.int32)

    # calorimeter cells: energy smeared, massless at the cell centre
    ecal = cells["calo"] == 0
    ce = np.maximum(cells["energy"], 1e-3)
    sig_cal = np.where(ecal, np.hypot(0.05 / np.sqrt(ce), 0.01),
                       np.hypot(1.0 / np.sqrt(ce), 0.05))
    cell_e = cells["energy"] * np.maximum(1 + sig_cal * z[n_ch:], 0.0)
    cell_pt = cell_e / np.cosh(cells["eta"])
    cell_pid = np.where(ecal, PF_PHOTON, PF_NEUTRAL_HADRON).astype(np.int32)

    out = {
        "pt": np.concatenate([ch_pt, cell_pt]),
        "eta": np.concatenate([eta[charged], cells["eta"]]),
        "phi": np.concatenate([phi[charged], cells["phi"]]),
        "energy": np.concatenate([ch_e, cell_e]),
        "charge": np.concatenate([ch_q, np.zeros(n_cell)]).astype(np.int8),
        "pid": np.concatenate([ch_pid, cell_pid]),
    }
    accept = out["pt"] > pt_min
    return {k: v[accept] for k, v in out.items()}


def round_mantissa(x: np.ndarray, bits: int = 14) -> np.ndarray:
    """Round float32 values to ``bits`` mantissa bits (relative precision 2**-bits).

    The shipped sample stores constituent kinematics this way: 14 bits is a relative
    precision of 6e-5, far below every detector resolution, and the zeroed low bits let the
    file compress to a size that can be shipped.
    """
    a = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    drop = np.uint32(23 - bits)
    half = np.uint32(1 << (23 - bits - 1))
    return ((a + half) >> drop << drop).view(np.float32)


PART_DTYPES = {"pt": np.float32, "eta": np.float32, "phi": np.float32,
               "energy": np.float32, "charge": np.int8, "pid": np.int32}


def stored_constituents(c: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Constituents as the sample stores them, from candidates ``c`` (arrays ``(n,)``).

    pT, eta and phi are rounded to 14 mantissa bits (:func:`round_mantissa`; phi re-wrapped
    into (-pi, pi]); the energy is then recomputed from the rounded pT and eta at the
    candidate's own mass, ``E = sqrt((pT cosh eta)^2 + m^2)``, so that every stored
    constituent is a physical four-vector (E >= |p|) whose mass is the candidate's.
    """
    pt0, eta0 = c["pt"].astype(np.float64), c["eta"].astype(np.float64)
    m2 = np.maximum(c["energy"].astype(np.float64) ** 2 - (pt0 * np.cosh(eta0)) ** 2, 0.0)
    pt, eta, phi = (round_mantissa(c[f]) for f in ("pt", "eta", "phi"))
    pi32 = np.float32(np.pi)
    phi = np.where(phi > pi32, phi - np.float32(2 * np.pi), phi)
    phi = np.where(phi <= -pi32, phi + np.float32(2 * np.pi), phi).astype(np.float32)
    p = pt.astype(np.float64) * np.cosh(eta.astype(np.float64))
    energy = np.sqrt(p * p + m2).astype(np.float32)
    return {"pt": pt, "eta": eta, "phi": phi, "energy": energy,
            "charge": c["charge"].astype(np.int8), "pid": c["pid"].astype(np.int32)}


def jet_four_vector(c: dict[str, np.ndarray]) -> tuple[float, float, float, float]:
    """E-scheme sum of constituents ``c`` in float64: (pT [GeV], eta, phi [rad], mass [GeV]).

    The sample's jet branches are this sum over the stored constituents, so that jet
    observables recomputed from the file's constituents reproduce the file's jet values.
    """
    pt, eta, phi = (c[f].astype(np.float64) for f in ("pt", "eta", "phi"))
    px, py = np.sum(pt * np.cos(phi)), np.sum(pt * np.sin(phi))
    pz, e = np.sum(pt * np.sinh(eta)), np.sum(c["energy"].astype(np.float64))
    jpt = float(np.hypot(px, py))
    jeta = float(np.arcsinh(pz / jpt)) if jpt > 0 else 0.0
    jm = float(np.sqrt(max(e * e - (px * px + py * py + pz * pz), 0.0)))
    return jpt, jeta, float(np.arctan2(py, px)), jm


def _wrap(dphi: np.ndarray | float) -> np.ndarray:
    return (np.asarray(dphi) + np.pi) % (2 * np.pi) - np.pi


def _block_seed(seed: int, label: int, block: int) -> int:
    """Pythia seed (1 .. 900,000,000) of one block, a pure function of its key."""
    key = np.array([seed * 1_000_003 + label * 10_007 + block], dtype=np.int64)
    with np.errstate(over="ignore"):
        h = _splitmix64(key.view(np.uint64))[0]
    return int(h % np.uint64(899_999_999)) + 1


def generate_block(process: str, seed: int, block: int, n_jets: int, cfg: GenConfig) -> JetBatch:
    """Generate ``n_jets`` jets of one class with Pythia8 + FastJet, as one reproducible block.

    The block's Pythia seed and detector-smearing stream depend only on ``(seed, class,
    block)``, so a sample is the same however many worker processes produce it.
    """
    import fastjet
    import pythia8mc

    label = LABELS[process]
    pythia = pythia8mc.Pythia("", False)
    for s in [
        f"Beams:eCM = {cfg.ecm}",
        f"PhaseSpace:pTHatMin = {cfg.pthat_min}",
        f"PhaseSpace:pTHatMax = {cfg.pthat_max}",
        "Random:setSeed = on",
        f"Random:seed = {_block_seed(seed, label, block)}",
        "Next:numberCount = 0",
        "Print:quiet = on",
        *PROCESS_SETTINGS[process],
        *cfg.pythia,
    ]:
        if not pythia.readString(s):
            raise ConfigError(f"Pythia rejected setting {s!r}")
    if not pythia.init():
        raise ConfigError(f"Pythia failed to initialise for process {process!r}")
    rng = np.random.default_rng([seed, label, block])
    jet_def = fastjet.JetDefinition(fastjet.antikt_algorithm, cfg.jet_r)
    signal_id = MATCH_ID.get(process)

    rows: dict[str, list[Any]] = {k: [] for k in ("pt", "eta", "phi", "mass", "event", "idx")}
    cons: dict[str, list[np.ndarray]] = {
        k: [] for k in ("pt", "eta", "phi", "energy", "charge", "pid")
    }
    i_event = -1
    while len(rows["pt"]) < n_jets:
        if not pythia.next():
            continue
        i_event += 1
        ev = pythia.event
        vis = [p for p in ev if p.isFinal() and p.isVisible()]
        kin = np.array([(p.px(), p.py(), p.pz(), p.e(), p.id(), p.charge()) for p in vis])
        cands = detector_response(
            kin[:, 0], kin[:, 1], kin[:, 2], kin[:, 3],
            kin[:, 4].astype(np.int32), kin[:, 5], rng, cfg.part_pt_min,
        )
        # truth resonances (last copy) to match signal jets
        truth: list[tuple[float, float]] = []
        if signal_id is not None:
            for i in range(ev.size()):
                p = ev[i]
                if abs(p.id()) == signal_id and p.iBotCopyId() == i:
                    truth.append((p.eta(), p.phi()))
        cpx = cands["pt"] * np.cos(cands["phi"])
        cpy = cands["pt"] * np.sin(cands["phi"])
        cpz = cands["pt"] * np.sinh(cands["eta"])
        pjs = []
        for k in range(len(cpx)):
            pj = fastjet.PseudoJet(cpx[k], cpy[k], cpz[k], cands["energy"][k])
            pj.set_user_index(k)
            pjs.append(pj)
        cs = fastjet.ClusterSequence(pjs, jet_def)
        # a little below the window: the cut is made on the stored (rounded) constituents
        candidates = fastjet.sorted_by_pt(cs.inclusive_jets(0.99 * cfg.jet_pt_min))
        for j_idx, jet in enumerate(candidates):
            idx = np.array([c.user_index() for c in jet.constituents()], dtype=np.int64)
            idx = idx[np.argsort(-cands["pt"][idx], kind="stable")]
            stored = stored_constituents({f: cands[f][idx] for f in cands})
            jpt, jeta, jphi, jm = jet_four_vector(stored)
            if not (cfg.jet_pt_min <= jpt <= cfg.jet_pt_max):
                continue
            if abs(jeta) >= cfg.jet_abs_eta_max:
                continue
            if signal_id is not None:
                dr = [np.hypot(jeta - te, float(_wrap(jphi - tp))) for te, tp in truth]
                if not dr or min(dr) >= cfg.match_dr:
                    continue
            for f in cons:
                cons[f].append(stored[f])
            rows["pt"].append(jpt)
            rows["eta"].append(jeta)
            rows["phi"].append(jphi)
            rows["mass"].append(jm)
            rows["event"].append(label * 1_000_000_000 + block * 100_000 + i_event)
            rows["idx"].append(j_idx)
            if len(rows["pt"]) == n_jets:
                break
    counts = np.array([len(c) for c in cons["pt"]], dtype=np.int64)
    parts = ak.zip(
        {
            f: ak.unflatten(
                np.concatenate(v).astype(PART_DTYPES[f]),
                counts,
            )
            for f, v in cons.items()
        },
        depth_limit=2,
    )
    return JetBatch(
        pt=np.array(rows["pt"], dtype=np.float32),
        eta=np.array(rows["eta"], dtype=np.float32),
        phi=np.array(rows["phi"], dtype=np.float32),
        mass=np.array(rows["mass"], dtype=np.float32),
        label=np.full(n_jets, label, dtype=np.int32),
        weight=np.ones(n_jets, dtype=np.float32),
        event=np.array(rows["event"], dtype=np.int64),
        jet_index=np.array(rows["idx"], dtype=np.int32),
        parts=parts,
    )


def _run_block(args: tuple[str, int, int, int, GenConfig]) -> JetBatch:
    return generate_block(*args)


def check_pythia_settings(settings: Sequence[str]) -> None:
    """Raise :class:`ConfigError` naming the first of ``settings`` that Pythia rejects (an
    unknown key or a value out of range), before any event is generated."""
    if not settings:
        return
    import pythia8mc

    pythia = pythia8mc.Pythia("", False)
    pythia.readString("Print:quiet = on")
    for s in settings:
        if "=" not in s or not pythia.readString(s):
            raise ConfigError(f"option '--set': Pythia rejects {s!r} (expected 'Key:sub = value', "
                              "a setting of the Pythia 8 manual)")


def generate(
    output: str | os.PathLike[str],
    n_qcd: int = 10_000,
    n_w: int = 10_000,
    n_top: int = 5_000,
    seed: int = 1,
    workers: int = 1,
    cfg: GenConfig | None = None,
    command: Sequence[str] | None = None,
    n_ood: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Generate a sample, write ``output`` (ROOT) and its dataset card (``.json`` beside it).

    Jets are produced in blocks of ``cfg.block_jets`` with seeds keyed on (seed, class,
    block), so the file is identical for any number of ``workers``. ``n_ood`` adds jets of
    the out-of-distribution processes, ``{process: n}`` with a process of
    :data:`OOD_PROCESS_SETTINGS`. Returns the card.
    """
    import concurrent.futures as cf
    import multiprocessing as mp

    cfg = cfg or GenConfig()
    check_pythia_settings(cfg.pythia)
    for name, n in (("n_qcd", n_qcd), ("n_w", n_w), ("n_top", n_top), ("workers", workers)):
        if n < (1 if name == "workers" else 0):
            raise ConfigError(f"generate: option '{name}' must be >= 0 (workers >= 1), got {n}")
    ood = dict(n_ood or {})
    for process, n in ood.items():
        if process not in OOD_PROCESS_SETTINGS:
            raise ConfigError(f"generate: option 'ood': unknown process {process!r} (known: "
                              f"{', '.join(OOD_PROCESS_SETTINGS)})")
        if not isinstance(n, int) or n < 0:
            raise ConfigError(f"generate: option 'ood': {process} needs a count >= 0, got {n!r}")
    counts_in = {"qcd": n_qcd, "w": n_w, "top": n_top, **ood}
    tasks: list[tuple[str, int, int, int, GenConfig]] = []
    for process, n in counts_in.items():
        for block, start in enumerate(range(0, n, cfg.block_jets)):
            tasks.append((process, seed, block, min(cfg.block_jets, n - start), cfg))
    if workers == 1:
        batches = [_run_block(t) for t in tasks]
    else:
        with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            batches = list(pool.map(_run_block, tasks))
    batch = JetBatch.concatenate(batches)
    import uproot

    out = write_root(batch, output, compression=uproot.LZMA(9))
    counts = batch.class_counts()
    card = {
        "name": out.stem,
        "description": _description(counts_in, cfg),
        "format": "hepsafe-jets/1 (docs/DATA.md, schemas/dataset.schema.json)",
        "file": out.name,
        "tree": "jets",
        "sha256": sha256sum(out),
        "n_jets": len(batch),
        "class_counts": {CLASS_NAMES[k]: v for k, v in counts.items()},
        "labels": {str(k): v for k, v in CLASS_NAMES.items()},
        "seed": seed,
        "generator": {
            "name": "Pythia 8",
            "processes": {k: PROCESS_SETTINGS[k] for k, n in counts_in.items() if n > 0},
            "settings": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
            "jets": "FastJet anti-kT, E-scheme, on particle-flow candidates",
            "detector": "hepsafe.data.generator.detector_response (see its docstring)",
            "event_numbering": "label * 1e9 + block * 1e5 + event index within block",
        },
        "split": {
            "rule": "test if splitmix64(event) / 2**64 < test_fraction "
                    "(hepsafe.data.sample.is_test)",
            "test_fraction": TEST_FRACTION,
            "counts": {
                "train": int((~is_test(batch.event)).sum()),
                "test": int(is_test(batch.event).sum()),
            },
        },
        "command": " ".join(command) if command else None,
        "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": package_versions(
            ("hepsafe", "pythia8mc", "fastjet", "numpy", "awkward", "uproot")
        ),
        "platform": f"{platform.system()} {platform.machine()}; {sys.implementation.name}",
        "license": "CC-BY-4.0",
    }
    write_json(out.with_suffix(".json"), card)
    return card



#: what the card says of each process
_PROCESS_TEXT = {
    "qcd": "QCD dijets",
    "w": "hadronic W (matched dR<0.6)",
    "top": "hadronic top (matched dR<0.6)",
    "hh20": "out-of-distribution H(174) -> hh, h(20 GeV) -> qq (matched dR<0.6 to the H)",
    "hh80": "out-of-distribution H(174) -> hh, h(80 GeV) -> qq (matched dR<0.6 to the H)",
    "top_w20": "out-of-distribution top with a 20 GeV W (matched dR<0.6 to the top)",
}


def _description(counts: Mapping[str, int], cfg: GenConfig) -> str:
    """The dataset card's description of a sample with ``counts`` jets per process."""
    made = [_PROCESS_TEXT[k] for k, n in counts.items() if n > 0]
    return (
        "Boosted jets (anti-kT R=0.8, pT 500-700 GeV, |eta|<2) from Pythia8 pp collisions "
        "at 13 TeV with a parametric particle-flow detector response: " + ", ".join(made) + "."
        + (f" Alternative physics settings: {'; '.join(cfg.pythia)}." if cfg.pythia else "")
    )


def check_generate_available() -> None:
    """Raise a clear error when the ``generate`` extra is not installed."""
    missing = []
    for mod in ("pythia8mc", "fastjet"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise InputError(
            f"generation needs {missing}: pip install 'hepsafe[generate]' "
            "(or pip install --find-links DIR pythia8mc with a local wheel)"
        )
