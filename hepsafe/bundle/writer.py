"""``hepsafe bundle``: a FAIR robustness challenge for jet taggers — nominal test jets, their
adversarially perturbed twins, dataset cards, the envelope and gate reports, and the
reference tagger's figures, so that anyone can score their own tagger on it
(:func:`hepsafe.bundle.scorer.score_bundle`).

Layout of a bundle directory::

    bundle.json            the manifest (schemas/bundle.schema.json): identifiers, license,
                           citation, labels, the attacks and their gate verdicts, the
                           reference tagger's figures, a sha256 for every file
    README.md              what the bundle is and how to score a tagger on it
    envelope.json          the per-constituent bounds every twin respects
    jets/nominal.root      the nominal test jets (hepsafe format) + jets/nominal.json (card)
    jets/<attack>.root     the same jets, perturbed by <attack> + its card (a perturbation
                           block: source file and checksum, attack, target, envelope, gate)
    gate/<attack>.json     the control-region gate's report for <attack>

The twins keep the nominal jets' order, event numbers, labels and weights: jet ``i`` of a
twin is jet ``i`` of the nominal file after the attack.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

from hepsafe import validation as validate
from hepsafe._files import sha256sum, write_json, write_text
from hepsafe._schemas import validate as validate_schema
from hepsafe.bundle.metrics import format_figures, score_files
from hepsafe.data.jets import CLASS_NAMES, JetBatch, write_root
from hepsafe.data.sample import DATA_DIR, sample_card
from hepsafe.exceptions import ConfigError, InputError
from hepsafe.perturbation.shifts import apply_shift

#: the configuration ``hepsafe bundle`` uses by default (the shipped sample's test split)
BUNDLE_CONFIG = DATA_DIR / "bundle.yaml"
FORMAT = "hepsafe-bundle/1"
LICENSE = "CC-BY-4.0"
CITATION = ("hepsafe robustness challenge: jets from the hepsafe generator (Pythia 8 + FastJet, "
            "parametric particle-flow response) and their adversarial twins inside a stated "
            "detector-uncertainty envelope; cite the hepsafe package and the bundle's sha256.")


def _source_card(files: list[str]) -> dict[str, Any]:
    """The dataset card of the first input file (the .json beside it), or a minimal one."""
    card_file = Path(files[0]).with_suffix(".json")
    if card_file.exists():
        return sample_card(card_file)
    raise InputError(f"{files[0]}: no dataset card ({card_file.name}) beside it; a bundle "
                     "records the generator settings and split of its jets from that card")


def _jet_card(name: str, path: Path, jets: JetBatch, source: dict[str, Any],
              perturbation: dict[str, Any] | None) -> dict[str, Any]:
    """A dataset card (hepsafe-jets/1) for one bundle file, derived from the source card."""
    counts = jets.class_counts()
    card = {
        "name": name,
        "description": (f"{source.get('description', '')} Test split of "
                        f"{source['name']}" + (f", perturbed by {perturbation['attack']}."
                                               if perturbation else ".")),
        "format": source["format"],
        "file": path.name,
        "tree": source.get("tree", "jets"),
        "sha256": sha256sum(path),
        "n_jets": len(jets),
        "class_counts": {CLASS_NAMES.get(k, str(k)): v for k, v in counts.items()},
        "labels": {str(k): v for k, v in CLASS_NAMES.items() if k in counts},
        "seed": source["seed"],
        "generator": source["generator"],
        "split": {**source["split"], "counts": {"train": 0, "test": len(jets)}},
        "versions": source["versions"],
        "license": LICENSE,
        "source": {"name": source["name"], "sha256": source["sha256"]},
    }
    if perturbation is not None:
        card["perturbation"] = perturbation
    return card


def write_bundle(cfg: Any, out: Path, command: str | None = None) -> dict[str, Any]:
    """Write a bundle for run configuration ``cfg`` (a :class:`~hepsafe.pipeline.config.
    RunConfig`; its samples, tagger, envelope, attacks, control sample and gate) into the
    empty directory ``out``; returns the manifest. Physics variations are not written."""
    from hepsafe import __version__
    from hepsafe._versions import package_versions
    from hepsafe.pipeline.runner import load_samples

    attacks = [s for s in cfg.systematics if s.kind == "attack"]
    if not attacks:
        raise ConfigError(f"{cfg.source}: key 'attacks': a bundle needs at least one attack")
    tagger = cfg.tagger.build()
    for syst in attacks:
        prepare = getattr(syst.up, "prepare", None)
        if callable(prepare):
            prepare(tagger)
    samples = load_samples(cfg)
    signal_labels = {int(np.unique(samples[n].jets.label)[0]) for n in cfg.signal}
    background = [s for s in samples.values() if s.role == "background"]
    if len(signal_labels) != 1 or not background:
        raise ConfigError(f"{cfg.source}: key 'samples': a bundle needs one signal label and "
                          "a background sample")
    signal = signal_labels.pop()
    bkg_label = int(np.unique(background[0].jets.label)[0])
    source = _source_card(samples[cfg.signal[0]].files)
    (out / "jets").mkdir()
    (out / "gate").mkdir()
    write_json(out / "envelope.json", cfg.envelope.to_dict())

    names = list(samples)
    # scores per sample, concatenated: the tagger's fixed-size batches make a jet's score
    # independent of the batch it is in, so they equal the scores of the written files
    nominal_scores = {n: tagger.predict(samples[n].jets) for n in names}
    files: dict[str, JetBatch] = {
        "nominal": JetBatch.concatenate([samples[n].jets for n in names])}
    scores = {"nominal": np.concatenate([nominal_scores[n] for n in names])}
    control = samples[cfg.control]
    records: list[dict[str, Any]] = []
    for syst in attacks:
        varied, info = {}, None
        for n in names:
            varied[n], info = apply_shift(syst.up, samples[n].jets, tagger)
        varied_scores = {n: tagger.predict(varied[n]) for n in names}
        files[syst.name] = JetBatch.concatenate([varied[n] for n in names])
        scores[syst.name] = np.concatenate([varied_scores[n] for n in names])
        rep = validate.gate(control.jets, varied[cfg.control], nominal_scores[cfg.control],
                            varied_scores[cfg.control], config=cfg.gate)
        rep.write_json(out / "gate" / f"{syst.name}.json")
        records.append({
            "name": syst.name,
            "options": copy.deepcopy(cfg["attacks"][int(cfg.key_of(syst.name).split("/")[1])]),
            "target": None if info is None else info.target,
            "gate": {"passed": bool(rep.passed), "failed": list(rep.failed_variables),
                     "file": f"gate/{syst.name}.json", "control_sample": cfg.control},
        })

    cards = {}
    for name, jets in files.items():
        path = write_root(jets, out / "jets" / f"{name}.root")
        perturbation = None
        if name != "nominal":
            rec = next(r for r in records if r["name"] == name)
            perturbation = {"attack": name, "options": rec["options"], "target": rec["target"],
                            "nominal": {"file": "nominal.root",
                                        "sha256": sha256sum(out / "jets" / "nominal.root")},
                            "envelope": "../envelope.json", "gate": rec["gate"]}
        cards[name] = _jet_card(f"{source['name']}_{name}", path, jets, source, perturbation)
        validate_schema(cards[name], "dataset", f"bundle card {name}.json", InputError)
        write_json(out / "jets" / f"{name}.json", cards[name])

    figures = score_files(scores, files, "nominal", signal, bkg_label, cfg.working_point)
    listed = sorted(p for p in out.rglob("*") if p.is_file())
    manifest = {
        "format": FORMAT,
        "name": f"hepsafe-robustness-{source['name']}",
        "description": (f"Nominal test jets of {source['name']} and their twins under "
                        f"{', '.join(r['name'] for r in records)}, inside the envelope of "
                        "envelope.json; score a tagger with `hepsafe score-bundle DIR "
                        "--tagger MODEL.onnx`."),
        "license": LICENSE,
        "citation": CITATION,
        "created_by": f"hepsafe {__version__}",
        "command": command,
        "versions": package_versions(("hepsafe", "numpy", "awkward", "uproot", "onnxruntime")),
        "labels": {"signal": signal, "background": bkg_label,
                   "names": {str(k): v for k, v in CLASS_NAMES.items()
                             if k in (signal, bkg_label)}},
        "working_point": {"signal_efficiency": cfg.working_point,
                          "rule": "threshold keeping this fraction of the nominal signal jets "
                                  "(weighted); every file is cut at that threshold"},
        "source": {"name": source["name"], "sha256": source["sha256"],
                   "generator": source["generator"], "split": source["split"]},
        "nominal": "jets/nominal.root",
        "attacks": records,
        "reference": {
            "tagger": {"file": Path(tagger.path).name, "sha256": sha256sum(tagger.path)},
            "figures": [f.as_dict() for f in figures],
        },
        "files": {str(p.relative_to(out)): sha256sum(p) for p in listed},
    }
    validate_schema(manifest, "bundle", "bundle.json", InputError)
    write_json(out / "bundle.json", manifest)
    write_text(out / "README.md", _readme(manifest, format_figures(figures)))
    return manifest


def _readme(manifest: dict[str, Any], table: str) -> str:
    return "\n".join([
        f"# {manifest['name']}", "", manifest["description"], "",
        f"License {manifest['license']}. {manifest['citation']}", "",
        "Score a tagger (ONNX, with its hepsafe card beside it or given by --card):", "",
        "    hepsafe score-bundle . --tagger MODEL.onnx", "",
        f"Reference tagger {manifest['reference']['tagger']['file']}:", "", "```", table,
        "```", "",
        "Every file's sha256 is in bundle.json; the scorer checks them before reading.", "",
    ])
