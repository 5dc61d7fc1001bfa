"""The hepsafe command: a thin layer over the library.

Exit status: 0 success; 2 a bad input or option, or an output directory refused (one line on
stderr, nothing written); 3 a control-region gate failed with --strict-gate; 4 the fit could
not be done (hepsafe run: every other output is written). Options: docs/RUN.md.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hepsafe.exceptions import ConfigError, FitError, HepsafeError

if TYPE_CHECKING:
    from hepsafe.pipeline.config import RunConfig

FORCE_HELP = ("replace an existing output directory, only one hepsafe wrote (it carries "
              "the .hepsafe-output marker and nothing else)")


def _cmd_generate(args: argparse.Namespace) -> int:
    from hepsafe import data as datasets

    datasets.check_generate_available()
    card = datasets.generate(
        args.output,
        cfg=datasets.GenConfig(pythia=tuple(args.pythia_settings or ())),
        n_qcd=args.n_qcd,
        n_w=args.n_w,
        n_top=args.n_top,
        seed=args.seed,
        workers=args.workers,
        command=["hepsafe", *sys.argv[1:]] if args.record_command else None,
        n_ood=_ood_counts(args.ood or ()),
    )
    print(f"wrote {args.output}: {card['class_counts']} (sha256 {card['sha256'][:12]}...)")
    return 0


def _ood_counts(items: list[str] | tuple[str, ...]) -> dict[str, int]:
    """``--ood PROCESS=N`` options as ``{process: n}``; a malformed one is a ConfigError."""
    out: dict[str, int] = {}
    for item in items:
        name, sep, n = item.partition("=")
        if not sep or not n.strip().isdigit():
            raise ConfigError(f"option '--ood': expected PROCESS=N (e.g. hh20=3000), got {item!r}")
        out[name.strip()] = int(n)
    return out


def _cmd_info(args: argparse.Namespace) -> int:
    from hepsafe import data as datasets

    batch = datasets.load_sample(path=args.file)
    print(datasets.describe(batch))
    return 0


def _run_config(cfg: RunConfig, args: argparse.Namespace) -> int:
    import logging

    from hepsafe.pipeline import runner as pipeline
    from hepsafe.report import document as report

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("hepsafe").setLevel(logging.WARNING if args.quiet else logging.INFO)
    try:
        res = pipeline.run(cfg, force=args.force, quiet=args.quiet,
                           strict_gate=args.strict_gate)
    except pipeline.GateFailed as exc:
        print(report.summary_text(exc.result.summary))
        print(f"hepsafe: gate failed: {exc}", file=sys.stderr)
        return 3
    except pipeline.FitFailed as exc:
        print(report.summary_text(exc.result.summary))
        print(f"hepsafe: fit not done: {exc}", file=sys.stderr)
        return 4
    print(report.summary_text(res.summary))
    print(f"wrote {res.output}/ ({len(res.files)} files; report: {res.output}/report.html)")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from hepsafe.pipeline import config as config

    cfg = config.load(args.config)
    if args.output:
        cfg = cfg.with_output(Path(args.output).resolve())
    return _run_config(cfg, args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from hepsafe.pipeline import config as config

    cfg = config.load(config.DEMO_CONFIG)
    return _run_config(cfg.with_output(Path(args.output).resolve()), args)


def _add_run_options(p: argparse.ArgumentParser, default_output: str | None) -> None:
    p.add_argument("-o", "--output", default=default_output,
                   help="output directory" + (f" (default {default_output})"
                                              if default_output else " (overrides the config)"))
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars (batch jobs)")
    p.add_argument("--strict-gate", action="store_true",
                   help="exit with status 3 when a control-region gate fails")


def _cmd_train(args: argparse.Namespace) -> int:
    from hepsafe.tagger import training as train

    models = list(train.MODELS) if args.model == "all" else [args.model]
    changes = {k: v for k, v in (("seed", args.seed), ("epochs", args.epochs),
                                 ("threads", args.threads), ("adversarial", args.adversarial),
                                 ("adv_epsilon", args.adv_epsilon),
                                 ("adv_fraction", args.adv_fraction),
                                 ("adv_steps", args.adv_steps)) if v is not None}
    # the command as parsed (not sys.argv), so the card records what ran
    command = " ".join(
        ["hepsafe train -o", str(args.output_dir), "--model", args.model]
        + [f"--{k.replace('_', '-')} {v}" for k, v in changes.items()]
        + (["--tiny"] if args.tiny else [])
    )
    if args.checkpoints:
        command += " --checkpoints " + " ".join(str(k) for k in args.checkpoints)
    results = train.train_reference(
        args.output_dir, models=models, tiny=args.tiny, command=command,
        log=print if args.verbose else (lambda s: None), checkpoints=args.checkpoints or (),
        **changes,
    )
    for name, r in results.items():
        print(f"{name}: wrote {r.model_path} (+ .json); test AUC {r.test_auc:.4f}, background "
              f"rejection at 50% signal efficiency {r.rejection_at_50:.1f} ({r.seconds:.0f} s)")
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from hepsafe._files import output_directory
    from hepsafe.fit import results as stats
    from hepsafe.fit import workspace as workspace
    from hepsafe.templates import files as templates_io

    inputs = [p for p in (args.templates, args.workspace, args.config) if p]
    with output_directory(args.output_dir, force=args.force, inputs=inputs,
                          writer="hepsafe fit") as tmp:
        t = templates_io.read_templates(args.templates)
        config = workspace.load_config(args.config, signal=args.signal, lumi=args.lumi)
        user = workspace.read_workspace(args.workspace) if args.workspace else None
        out = stats.fit_templates(t, config, user, asimov=args.asimov,
                                  limit=not args.no_limit, hepdata=args.hepdata)
        written = stats.write_fit_outputs(out, tmp)
    print(out.text)
    print("wrote " + ", ".join(str(Path(args.output_dir) / p.name) for p in written))
    return 0


def _cmd_bundle(args: argparse.Namespace) -> int:
    from hepsafe._files import output_directory
    from hepsafe.bundle import writer
    from hepsafe.pipeline import config as config
    from hepsafe.pipeline.runner import run_inputs

    cfg = config.load(args.config or writer.BUNDLE_CONFIG)
    with output_directory(args.output, force=args.force, inputs=run_inputs(cfg),
                          writer="hepsafe bundle") as tmp:
        manifest = writer.write_bundle(cfg, tmp, command=" ".join(["hepsafe", *sys.argv[1:]]))
    print(f"wrote {args.output}: nominal + {len(manifest['attacks'])} attacked twins "
          f"({', '.join(a['name'] for a in manifest['attacks'])}); "
          f"score a tagger with: hepsafe score-bundle {args.output} --tagger MODEL.onnx")
    return 0


def _cmd_score_bundle(args: argparse.Namespace) -> int:
    import json

    from hepsafe.bundle import format_figures, score_bundle
    from hepsafe.tagger.onnx import OnnxTagger

    if not Path(args.tagger).is_file():
        raise ConfigError(f"option '--tagger': {args.tagger}: no such file")
    tagger = OnnxTagger(args.tagger, card=args.card)
    rows = score_bundle(args.bundle, tagger)
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=1))
    else:
        print(format_figures(rows))
    return 0


def _cmd_card(args: argparse.Namespace) -> int:
    from hepsafe._files import write_json
    from hepsafe.tagger.weaver import card_from_weaver, parse_mapping

    def names(text: str | None) -> list[str]:
        return [c.strip() for c in (text or "").split(",") if c.strip()]

    out = Path(args.output)
    if out.exists() and not args.force:
        raise ConfigError(f"option '-o': {out} exists (use --force to replace it)")
    card = card_from_weaver(
        args.model, args.preprocess, signal=names(args.signal),
        background=names(args.background), classes=names(args.classes) or None,
        mapping=parse_mapping(args.map or []), pad_mode=args.pad_mode, name=args.name,
        license=args.license, citation=args.citation, card_dir=out.parent)
    write_json(out, card)
    kept = [d["name"] for d in card["inputs"]]
    print(f"wrote {out}: tagger '{card['name']}', inputs {kept}, score "
          f"{card['output']['signal']} vs {card['output'].get('background', 'all others')}; "
          f"use it with OnnxTagger({str(args.model)!r}, card={str(out)!r})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``hepsafe`` command."""
    from hepsafe import __version__

    p = argparse.ArgumentParser(prog="hepsafe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"hepsafe {__version__}",
                   help="print the version and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    g = sub.add_parser("generate", help="generate a jet sample with Pythia8 + FastJet")
    g.add_argument("-o", "--output", required=True, help="output ROOT file (card written beside)")
    g.add_argument("--n-qcd", type=int, default=10_000, help="QCD jets (default 10000)")
    g.add_argument("--n-w", type=int, default=10_000, help="W jets (default 10000)")
    g.add_argument("--n-top", type=int, default=5_000, help="top jets (default 5000)")
    g.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    g.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    g.add_argument("--set", dest="pythia_settings", action="append", metavar="SETTING",
                   help="an extra Pythia setting for every process, e.g. "
                        "'TimeShower:alphaSvalue = 0.120' (repeatable; recorded in the card)")
    g.add_argument("--ood", action="append", metavar="PROCESS=N",
                   help="also N jets of an out-of-distribution process: hh20, hh80 "
                        "(H(174) -> hh, h at 20 / 80 GeV) or top_w20 (top with a 20 GeV W); "
                        "repeatable")
    g.add_argument(
        "--no-record-command", dest="record_command", action="store_false",
        help="do not write the command line into the dataset card",
    )
    g.set_defaults(func=_cmd_generate)

    i = sub.add_parser("info", help="summarise a jet file (default: the shipped sample)")
    i.add_argument("file", nargs="?", default=None, metavar="FILE",
                   help="ROOT file in the hepsafe format (docs/DATA.md; default: the shipped "
                        "sample hepsafe/data/sample.root)")
    i.set_defaults(func=_cmd_info)

    t = sub.add_parser("train", help="train the reference taggers (W vs QCD) and export ONNX")
    t.add_argument("-o", "--output-dir", required=True,
                   help="directory for <model>.onnx and its card <model>.json")
    t.add_argument("--model", choices=["pfn", "hl", "pfn3", "pfn3_md", "all"], default="all",
                   help="which tagger (default all: pfn and hl); pfn3 / pfn3_md: the QCD / W "
                        "/ top classifier for the anomaly scores, without / with mass "
                        "decorrelation")
    t.add_argument("--seed", type=int, default=None, help="random seed (default 1)")
    t.add_argument("--epochs", type=int, default=None, help="epochs (default per model)")
    t.add_argument("--threads", type=int, default=None, help="torch threads (default 2)")
    t.add_argument("--tiny", action="store_true",
                   help="tiny networks on a few hundred jets (seconds; for tests)")
    t.add_argument("--adversarial", default=None, metavar="ATTACK",
                   help="adversarial training: pgd, fgsm or learned (attacked copies mixed "
                        "into each batch; writes <model>_adv_<attack>.onnx)")
    t.add_argument("--adv-epsilon", type=float, default=None,
                   help="envelope bound of the in-training attack: relative pT, absolute "
                        "eta and phi [rad] (default 0.02)")
    t.add_argument("--adv-fraction", type=float, default=None,
                   help="fraction of each batch replaced by attacked jets, in (0, 1] "
                        "(default 0.5)")
    t.add_argument("--adv-steps", type=int, default=None,
                   help="gradient steps of the in-training attack (default: 5 for pgd, 1 "
                        "for fgsm)")
    t.add_argument("--checkpoints", type=int, nargs="+", default=None, metavar="EPOCH",
                   help="also export the network after these epochs, as "
                        "<model>_epoch<k>.onnx (+ card)")
    t.add_argument("-v", "--verbose", action="store_true", help="print progress per epoch")
    t.set_defaults(func=_cmd_train)

    d = sub.add_parser("demo", help="the main job on the shipped sample and reference PFN")
    _add_run_options(d, "hepsafe-demo")
    d.set_defaults(func=_cmd_demo)

    b = sub.add_parser("bundle", help="write a robustness-challenge bundle: nominal test jets, "
                                      "their adversarial twins, cards, gate reports")
    b.add_argument("-o", "--output", default="hepsafe-bundle",
                   help="output directory (default hepsafe-bundle)")
    b.add_argument("--config", default=None,
                   help="run configuration giving samples, tagger, envelope and attacks "
                        "(default: hepsafe/data/bundle.yaml, the shipped sample's test split)")
    b.add_argument("--force", action="store_true", help=FORCE_HELP)
    b.set_defaults(func=_cmd_bundle)

    sb = sub.add_parser("score-bundle", help="score a tagger on a robustness bundle")
    sb.add_argument("bundle", help="bundle directory (written by hepsafe bundle)")
    sb.add_argument("--tagger", required=True, help="the tagger's ONNX file")
    sb.add_argument("--card", default=None, help="its card (default: the .json beside it)")
    sb.add_argument("--json", action="store_true", help="print the figures as JSON")
    sb.set_defaults(func=_cmd_score_bundle)

    c = sub.add_parser("card", help="write a tagger's model card (schemas/tagger.schema.json)")
    csub = c.add_subparsers(dest="card_command", required=True, metavar="SOURCE")
    cw = csub.add_parser("from-weaver", help="a card from weaver-core's model.onnx and "
                                             "preprocess.json")
    cw.add_argument("model", metavar="MODEL.onnx", help="the ONNX file weaver exported")
    cw.add_argument("preprocess", metavar="PREPROCESS.json",
                    help="the preprocess.json weaver wrote beside it")
    cw.add_argument("--signal", required=True, metavar="CLASSES",
                    help="signal class(es) of the score, comma-separated (label_ optional)")
    cw.add_argument("--background", default=None, metavar="CLASSES",
                    help="background class(es): score = S / (S + B) (default: all others)")
    cw.add_argument("--classes", default=None, metavar="NAMES",
                    help="class names of the output columns, comma-separated (default: "
                         "output_names of preprocess.json, label_ dropped)")
    cw.add_argument("--map", action="append", metavar="VAR=FEATURE",
                    help="map a weaver variable to a hepsafe feature, or VAR=field:NAME to a "
                         "constituent field of the jets (repeatable)")
    cw.add_argument("--pad-mode", choices=["wrap", "constant"], default="wrap",
                    help="the training's pad_mode (not in preprocess.json; default wrap)")
    cw.add_argument("--name", default=None, help="tagger name (default from the file names)")
    cw.add_argument("--license", default="unknown", help="the model's license")
    cw.add_argument("--citation", default=None, help="how to cite the model")
    cw.add_argument("-o", "--output", required=True, metavar="CARD.json", help="card to write")
    cw.add_argument("--force", action="store_true", help="replace an existing CARD.json")
    cw.set_defaults(func=_cmd_card)

    r = sub.add_parser("run", help="the main job on a YAML configuration (schemas/run.schema.json)")
    r.add_argument("config", help="YAML run configuration")
    _add_run_options(r, None)
    r.set_defaults(func=_cmd_run)

    f = sub.add_parser("fit", help="templates (+ a pyhf workspace) -> workspace/patch and fit")
    f.add_argument("templates", help="templates file (.root or .json, hepsafe.templates.files)")
    f.add_argument("-o", "--output-dir", required=True,
                   help="new output directory for workspace.json, patch.json (+ patchset.json), "
                        "fit.json, fit.txt, yields.txt")
    f.add_argument("--workspace", help="user's pyhf workspace: write a patch adding the variations")
    f.add_argument("--config", help="JSON configuration (schemas/workspace_config.schema.json)")
    f.add_argument("--signal", nargs="+", default=None,
                   help="signal sample(s) scaled by the POI (default: 'signal' of --config, "
                        "else the sample named 'signal')")
    f.add_argument("--lumi", type=float, default=None,
                   help="relative luminosity uncertainty (default: 'lumi' of --config, else "
                        "none)")
    f.add_argument("--asimov", action="store_true", help="fit the Asimov data set at POI = 1")
    f.add_argument("--no-limit", action="store_true", help="skip the CLs upper limit")
    f.add_argument("--hepdata", help="HEPData record (insNNNNNNN): also write a pyhf PatchSet")
    f.add_argument("--force", action="store_true", help=FORCE_HELP)
    f.set_defaults(func=_cmd_fit)
    return p


def _show_warning(message: Any, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """A warning as one line on stderr."""
    text = str(message).strip().splitlines()
    print(f"hepsafe: warning: {text[0] if text else category.__name__}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hepsafe`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return int(args.func(args))
        except FitError as exc:
            print(f"hepsafe: fit not done: {exc}", file=sys.stderr)
            return 4
        except HepsafeError as exc:
            print(f"hepsafe: error: {exc}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
