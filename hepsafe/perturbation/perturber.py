"""``perturb``: apply a per-constituent delta to a JetBatch inside an uncertainty envelope.

A delta moves each constituent: ``pT -> pT * (1 + d_pt)``, ``eta -> eta + d_eta``,
``phi -> phi + d_phi`` [rad]. It is given as any of:

- a float array of shape ``(n_constituents, 3)``, columns ``(d_pt, d_eta, d_phi)``, rows in
  the order of :meth:`JetBatch.flat` (the canonical form; float32 C-contiguous avoids a copy);
- a mapping ``{"pt": ..., "eta": ..., "phi": ...}`` of flat ``(n_constituents,)`` arrays (a
  missing coordinate is zero);
- an ``ak.Array`` of type ``n_jets * var * {pt, eta, phi}`` with the batch's constituent
  counts;
- ``None``: no delta (only the jet observables are recomputed).

For repeated calls on the same jets (an attack's steps), :class:`Perturber` extracts the flat
buffers once; :func:`project` clips a flat delta to the envelope box without any JetBatch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

import awkward as ak
import numpy as np

from hepsafe.data.jets import JetBatch
from hepsafe.exceptions import ConfigError, InputError
from hepsafe.perturbation import _kernels as kernels
from hepsafe.perturbation.envelope import COORDINATES, Envelope, particle_classes

if TYPE_CHECKING:
    from hepsafe.attacks.base import AttackInfo

PRESERVABLE = ("pt", "mass")
DeltaLike: TypeAlias = np.ndarray | Mapping[str, np.ndarray] | ak.Array | None


@dataclass(frozen=True, eq=False)
class Perturbation:
    """A perturbed batch and what was applied.

    ``jets``: the perturbed JetBatch (``parts`` has a boolean ``mask`` field; the jets keep
    the input's definition: pT, mass and soft-drop mass are the input's times the ratio of
    the constituent sums after and before, eta and phi shifted by the change of the sums'
    direction, see :meth:`Perturber.build`). ``delta_applied``: float32
    ``(n_constituents, 3)``, the delta after clipping and restoration (feed it back as the next
    step's starting point). ``flagged``: bool ``(n_jets,)``, True where a preserved observable
    could not be brought within tolerance inside the envelope (such a jet keeps its closest
    attempt, still inside the envelope); ``flags`` holds the reasons (``kernels.FLAG_PT``,
    ``kernels.FLAG_MASS`` bits, uint8). ``envelope`` and ``preserve``: what was asked for.
    ``info``: what an attack did (:class:`~hepsafe.attacks.base.AttackInfo`: its name,
    target and settings); None when no attack made the perturbation.
    """

    jets: JetBatch
    delta_applied: np.ndarray
    flagged: np.ndarray
    flags: np.ndarray
    envelope: Envelope = field(default_factory=Envelope)
    preserve: tuple[str, ...] = ("pt", "mass")
    info: AttackInfo | None = None


def _packed(parts: ak.Array) -> ak.contents.ListOffsetArray:
    layout = ak.to_packed(ak.to_layout(parts), highlevel=False)
    if not isinstance(layout, ak.contents.ListOffsetArray):
        layout = layout.to_ListOffsetArray64(True)
    if not isinstance(layout.content, ak.contents.RecordArray):
        raise InputError("JetBatch 'parts' must be a jagged array of records")
    return layout


def _field(layout: ak.contents.ListOffsetArray, name: str, dtype: Any) -> np.ndarray:
    data = ak.to_numpy(ak.Array(layout.content[name]), allow_missing=False)
    return np.ascontiguousarray(data, dtype=dtype)


def check_preserve(preserve: Sequence[str]) -> tuple[str, ...]:
    """Validate the names of preserved jet observables (a subset of ``("pt", "mass")``)."""
    if isinstance(preserve, str):
        preserve = (preserve,)
    out = tuple(preserve)
    bad = [p for p in out if p not in PRESERVABLE]
    if bad:
        raise ConfigError(f"option 'preserve': unknown observable(s) {bad}, expected {PRESERVABLE}")
    return out


class Perturber:
    """Flat buffers of one JetBatch, extracted once, to perturb it many times.

    Inputs are checked for NaN/inf here (an :class:`InputError` names the event and jet).
    ``bounds`` (float64 ``(4, 3)``, class x (pt, eta, phi)) replaces the envelope's box; the
    physics variations use it, as they are not limited to the envelope. ``max_iter`` caps the
    restoration steps per jet. ``threads``: kernel threads (None: Numba's thread count); the
    result is the same for any number.
    """

    def __init__(
        self,
        jets: JetBatch,
        envelope: Envelope | None = None,
        preserve: Sequence[str] = ("pt", "mass"),
        max_iter: int = 8,
        bounds: np.ndarray | None = None,
        threads: int | None = 1,
    ) -> None:
        self.jets = jets
        self.envelope = envelope if envelope is not None else Envelope()
        self.preserve = check_preserve(preserve)
        self.max_iter = int(max_iter)
        self.threads = threads
        layout = _packed(jets.parts)
        self._layout = layout
        self.offsets = np.ascontiguousarray(layout.offsets.data, dtype=np.int64)
        if len(self.offsets) and self.offsets[0] != 0:
            self.offsets = self.offsets - self.offsets[0]
        self.pt = _field(layout, "pt", np.float32)
        self.eta = _field(layout, "eta", np.float32)
        self.phi = _field(layout, "phi", np.float32)
        self.energy = _field(layout, "energy", np.float32)
        fields = layout.content.fields
        self.mask = (
            _field(layout, "mask", np.bool_)
            if "mask" in fields
            else np.ones(len(self.pt), dtype=np.bool_)
        )
        pid = _field(layout, "pid", np.int32) if "pid" in fields else None
        charge = _field(layout, "charge", np.int8) if "charge" in fields else None
        if pid is None and charge is None:
            if not self.envelope.is_uniform:
                raise InputError(
                    "the envelope has per-class bounds but constituents lack fields 'pid' "
                    "and 'charge' to classify them"
                )
            self.classes = np.zeros(len(self.pt), dtype=np.int8)
        else:
            self.classes = particle_classes(pid, charge)
        self.bounds = (
            self.envelope.table()
            if bounds is None
            else np.ascontiguousarray(bounds, dtype=np.float64).reshape(4, 3)
        )
        self._check_finite()
        self._nominal: np.ndarray | None = None

    @property
    def nominal_sums(self) -> np.ndarray:
        """The input's constituent sums, float32 ``(4, n_jets)`` (pT [GeV], eta, phi [rad],
        mass [GeV]): the kernels' own sums at zero delta (kept constituents, the envelope's
        ``min_pt``, no restoration), computed once. A zero delta reproduces them bit for bit.
        """
        if self._nominal is None:
            res = kernels.apply_delta(
                self.offsets, self.pt, self.eta, self.phi, self.energy, self.mask,
                self.classes, np.zeros((self.n_constituents, 3), dtype=np.float32),
                self.bounds, min_pt=self.envelope.min_pt, threads=self.threads,
            )
            self._nominal = res.jet
        return self._nominal

    @property
    def n_constituents(self) -> int:
        """Number of constituents (masked ones included)."""
        return len(self.pt)

    def _where(self, k: int) -> str:
        j = int(np.searchsorted(self.offsets, k, side="right") - 1)
        return (
            f"event {int(self.jets.event[j])}, jet_index {int(self.jets.jet_index[j])} "
            f"(constituent {k - int(self.offsets[j])})"
        )

    def _check_finite(self) -> None:
        for name in ("pt", "eta", "phi", "energy"):
            values = getattr(self, name)
            bad = np.flatnonzero(~np.isfinite(values))
            if len(bad):
                raise InputError(
                    f"constituent field '{name}' is {values[bad[0]]} at {self._where(int(bad[0]))}"
                )

    # ------------------------------------------------------------------ deltas
    def as_delta(self, delta: DeltaLike) -> np.ndarray:
        """The delta as float32 ``(n_constituents, 3)`` (no copy when it already is)."""
        n = self.n_constituents
        if delta is None:
            return np.zeros((n, 3), dtype=np.float32)
        if isinstance(delta, ak.Array):
            counts = ak.to_numpy(ak.num(delta, axis=1))
            if not np.array_equal(counts, np.diff(self.offsets)):
                raise InputError("delta: its constituent counts differ from the batch's")
            delta = {c: ak.to_numpy(ak.flatten(delta[c], axis=1))
                     for c in COORDINATES if c in delta.fields}
        if isinstance(delta, Mapping):
            unknown = set(delta) - set(COORDINATES)
            if unknown:
                raise InputError(f"delta: unknown coordinate(s) {sorted(unknown)}, "
                                 f"expected {list(COORDINATES)}")
            out = np.zeros((n, 3), dtype=np.float32)
            for q, c in enumerate(COORDINATES):
                if c in delta:
                    v = np.asarray(delta[c])
                    if v.shape != (n,):
                        raise InputError(f"delta '{c}' has shape {v.shape}, expected ({n},)")
                    out[:, q] = v
            return out
        arr = np.asarray(delta)
        if arr.shape != (n, 3):
            raise InputError(
                f"delta has shape {arr.shape}, expected ({n}, 3): columns (d_pt, d_eta, d_phi)"
            )
        return np.ascontiguousarray(arr, dtype=np.float32)

    def _raise_bad(self, flags: np.ndarray, delta: np.ndarray) -> None:
        bad = np.flatnonzero(flags & (kernels.FLAG_BAD_INPUT | kernels.FLAG_BAD_DELTA))
        if not len(bad):
            return
        j = int(bad[0])
        s, e = int(self.offsets[j]), int(self.offsets[j + 1])
        rows = np.flatnonzero(~np.isfinite(delta[s:e]).all(axis=1))
        k = s + int(rows[0]) if len(rows) else s
        raise InputError(f"delta is not finite ({delta[k].tolist()}) at {self._where(k)}")

    # ------------------------------------------------------------------ operations
    def clip(self, delta: DeltaLike, out: np.ndarray | None = None) -> np.ndarray:
        """Project a delta onto the envelope box only (no observable restoration).

        Returns float32 ``(n_constituents, 3)``; ``out`` may be a caller's buffer (even the
        delta itself) to avoid allocating.
        """
        d = self.as_delta(delta)
        res, bad = kernels.clip_delta(d, self.classes, self.bounds, out)
        if bad >= 0:
            raise InputError(f"delta is not finite ({d[bad].tolist()}) at {self._where(bad)}")
        return res

    def _apply(
        self, delta: DeltaLike, drop: np.ndarray | None = None
    ) -> tuple[kernels.Applied, np.ndarray]:
        d = self.as_delta(delta)
        env = self.envelope
        mask = self.mask
        if drop is not None:
            drop = np.asarray(drop, dtype=bool)
            if drop.shape != mask.shape:
                raise InputError(f"drop has shape {drop.shape}, expected {mask.shape}")
            mask = mask & ~drop
        res = kernels.apply_delta(
            self.offsets, self.pt, self.eta, self.phi, self.energy, mask, self.classes,
            d, self.bounds, min_pt=env.min_pt, preserve_pt="pt" in self.preserve,
            preserve_mass="mass" in self.preserve, pt_tol=env.pt_tol, mass_tol=env.mass_tol,
            mass_atol=env.mass_atol, max_iter=self.max_iter, threads=self.threads,
        )
        self._raise_bad(res.flags, d)
        return res, d

    def project(self, delta: DeltaLike) -> tuple[np.ndarray, np.ndarray]:
        """Clip and restore without building a JetBatch.

        Returns ``(delta_applied, flagged)``: float32 ``(n_constituents, 3)`` and bool
        ``(n_jets,)``.
        """
        res, _ = self._apply(delta)
        return res.delta, (res.flags & (kernels.FLAG_PT | kernels.FLAG_MASS)) != 0

    def apply(self, delta: DeltaLike, drop: np.ndarray | None = None) -> Perturbation:
        """The perturbed batch (see :func:`perturb`).

        ``drop`` (bool ``(n_constituents,)``) masks those constituents in addition.
        """
        res, _ = self._apply(delta, drop)
        return Perturbation(
            jets=self.build(res),
            delta_applied=res.delta,
            flagged=(res.flags & (kernels.FLAG_PT | kernels.FLAG_MASS)) != 0,
            flags=res.flags & np.uint8(kernels.FLAG_PT | kernels.FLAG_MASS),
            envelope=self.envelope,
            preserve=self.preserve,
        )

    def build(self, res: kernels.Applied) -> JetBatch:
        """A JetBatch from kernel outputs (new kinematics and mask; other fields shared).

        The jets keep the analysis' definition (corrected pT and mass, whatever the input
        jets hold): pT, mass and soft-drop mass are the input jet's times the ratio of the
        varied to the nominal constituent sums (:attr:`nominal_sums`), eta and phi are
        shifted by the change of the sums' eta and phi (:func:`kernels.rescale_jets`). So a
        zero delta leaves every jet bit for bit; a jet without kept input constituents is
        left as it is; a jet whose constituents all get masked has pT = mass = 0 (it is
        lost) and keeps its direction.
        """
        content = self._layout.content
        new = {"pt": res.pt, "eta": res.eta, "phi": res.phi, "energy": res.energy,
               "mask": res.mask}
        fields = list(content.fields) + (["mask"] if "mask" not in content.fields else [])
        contents = [
            ak.contents.NumpyArray(new[f]) if f in new else content[f] for f in fields
        ]
        record = ak.contents.RecordArray(contents, fields, length=len(res.pt))
        parts = ak.Array(ak.contents.ListOffsetArray(ak.index.Index64(self.offsets), record))
        j = self.jets
        jet, msd = kernels.rescale_jets(np.stack([j.pt, j.eta, j.phi, j.mass]),
                                        self.nominal_sums, res.jet, j.msoftdrop)
        return j.replace(pt=jet[0].copy(), eta=jet[1].copy(), phi=jet[2].copy(),
                         mass=jet[3].copy(), msoftdrop=msd,
                         parts=parts)


def perturb(
    jets: JetBatch,
    delta: DeltaLike,
    envelope: Envelope | None = None,
    preserve: Sequence[str] = ("pt", "mass"),
) -> Perturbation:
    """Apply ``delta`` (see the module docstring for its forms) to ``jets`` inside ``envelope``.

    The delta is clipped to the envelope box per particle class; phi is wrapped to (-pi, pi];
    constituent energies are recomputed at fixed constituent mass; constituents whose pT falls
    below ``envelope.min_pt`` are masked (``mask`` False, never removed). Jet observables named
    in ``preserve`` (``"pt"``, ``"mass"``) are restored within the envelope's tolerances
    towards the jet summed from the input constituents, without leaving the envelope; jets
    where that is impossible are flagged. The output jets are the input jets moved as their
    constituent sums moved (:meth:`Perturber.build`), so they keep the analysis' jet
    definition. ``jets`` is not modified.

    Examples
    --------
    >>> import numpy as np
    >>> import hepsafe
    >>> jets = hepsafe.data.load_sample("test")[:3]
    >>> env = hepsafe.Envelope(pt=0.02, eta=0.0, phi=0.0)
    >>> n = int(jets.n_parts.sum())  # constituents of the three jets
    >>> up = hepsafe.perturb(jets, {"pt": np.full(n, 0.05, np.float32)}, env, preserve=())
    >>> up.delta_applied[0]  # the 5 % asked for, clipped to the envelope's 2 %
    array([0.02, 0.  , 0.  ], dtype=float32)
    >>> np.round(up.jets.pt / jets.pt, 4)  # the jets follow their constituents
    array([1.02, 1.02, 1.02], dtype=float32)
    >>> kept = hepsafe.perturb(jets, {"pt": np.full(n, 0.05, np.float32)}, env)
    >>> bool(np.all(np.abs(kept.jets.pt / jets.pt - 1) <= env.pt_tol)), bool(kept.flagged.any())
    (True, False)
    """
    return Perturber(jets, envelope, preserve).apply(delta)


def project(
    delta: np.ndarray,
    classes: np.ndarray,
    envelope: Envelope,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Clip a flat delta ``(n_constituents, 3)`` to the envelope box, per particle class.

    ``classes``: int8 class codes ``(n_constituents,)``
    (:func:`hepsafe.perturbation.envelope.particle_classes`).
    Returns float32 ``(n_constituents, 3)``, in ``out`` when given (may be ``delta`` itself).
    Raises :class:`InputError` on a non-finite delta (naming its flat index).
    """
    d = np.ascontiguousarray(delta, dtype=np.float32)
    if d.ndim != 2 or d.shape[1] != 3 or len(classes) != len(d):
        raise InputError(
            f"project: delta has shape {d.shape}, expected ({len(classes)}, 3)"
        )
    res, bad = kernels.clip_delta(
        d, np.ascontiguousarray(classes, dtype=np.int8), envelope.table(), out
    )
    if bad >= 0:
        raise InputError(f"project: delta is not finite at flat constituent index {bad}")
    return res
