"""The undertrained study: are deliberately undertrained taggers nearly immune to attacks?

    python examples/undertrained.py [-o out/undertrained] [--plot docs/img/undertrained.png]

Shimmin & Nachman report that deliberately undertrained classifiers are nearly immune to
adversarial perturbations. Here one PFN is trained with the reference settings
(``hepsafe.tagger.training.default_config("pfn")``: 24 epochs, seed 1, one torch thread)
and exported after epochs 1, 2, 3, 4, 8, 16 and 24 of that run (``train(checkpoints=...)``:
the earlier ones are undertrained with the same learning-rate schedule, not retrained with
fewer epochs). The shipped reference ``pfn`` (the same settings on two threads) is a further
point. For each network: the clean AUC on the test split of the shipped sample (W vs QCD),
the working point that keeps 50 % of its clean W jets, and eps_S at that threshold after
PGD (epsilon 0.02, ``Envelope.uniform(0.02)``, 10 steps, jet pT and mass restored within
1 %). Targets ``down`` and ``signal_down_background_up`` move every W jet the same way
(down), so the W jets are attacked once and the result holds for both (checked on 100 jets:
the two targets give identical deltas). With ``--learned``, also a learned adversary
trained against each network (LearnedConfig defaults, the default gate, epsilon 0.02).

Delta eps_S = eps_S(attacked) - eps_S(clean) on the same W jets, with the standard deviation
of a paired bootstrap (W jets resampled, the same replicas for every network, the
threshold kept). The slope of Delta eps_S against clean AUC and the difference between the
least-trained network and the final one use the same replicas, so their correlations are
kept. The figure: Delta eps_S against clean AUC. Under ten minutes on one core.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hepsafe import Envelope, metrics
from hepsafe import data as datasets
from hepsafe.attacks import LearnedAdversary, LearnedConfig, make_attack
from hepsafe.attacks.adversary import default_gate_config
from hepsafe.models import MODELS_DIR
from hepsafe.report import markdown_table, write_json, write_text
from hepsafe.tagger import OnnxTagger
from hepsafe.tagger import training as T

CHECKPOINTS = (1, 2, 3, 4, 8, 16)
EPSILON = 0.02
STEPS = 10
WP = 0.5
SEED = 1
#: the quick check quoted in issue 16: (clean AUC, eps_S after PGD) of a 1-epoch PFN and
#: of the reference PFN, from eps_S 0.50
ISSUE_POINTS = {"1-epoch PFN (issue 16)": (0.826, 0.369), "reference PFN (issue 16)":
                (0.918, 0.394)}


def paired_bootstrap(clean: np.ndarray, attacked: np.ndarray, n_boot: int,
                     seed: int) -> np.ndarray:
    """Bootstrap replicas of Delta eps_S for every network, ``(n_boot, K)``.

    ``clean``, ``attacked``: bool ``(K, n)``, whether each of the ``n`` W jets passes the
    network's threshold before / after the attack. Every replica draws the jets with
    replacement once (multinomial counts) for all ``K`` networks.
    """
    n = clean.shape[1]
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_boot)
    diff = attacked.astype(np.float64) - clean.astype(np.float64)  # (K, n)
    return counts @ diff.T / n


def evaluate(path: Path, sig: Any, bkg: Any, train: Any = None) -> dict[str, Any]:
    """Clean AUC, threshold, and per-jet pass flags before and after PGD for one network;
    with ``train`` (jets) also after a learned adversary trained against it on them."""
    tagger = OnnxTagger(path, providers="cpu", intra_op_threads=1)
    s0, b0 = tagger.predict(sig), tagger.predict(bkg)
    thr = metrics.threshold_at_efficiency(s0, WP)
    attack = make_attack("pgd", tagger, Envelope.uniform(EPSILON), seed=SEED, steps=STEPS)
    s1 = tagger.predict(attack(sig, "down").jets)
    out = {"auc": metrics.roc_auc(s0, b0), "threshold": thr, "clean": s0 >= thr,
           "attacked": s1 >= thr, "tagger": tagger, "attack": attack}
    if train is not None:
        adv = LearnedAdversary(tagger, Envelope(), LearnedConfig(threads=1),
                               gate_config=default_gate_config())
        adv.fit(train, target="down")
        out["learned"] = tagger.predict(adv(sig, "down").jets) >= thr
        out["epoch_kept"] = adv.record.get("epoch_kept")
    return out


def same_for_both_targets(attack: Any, sig: Any) -> bool:
    """Whether targets "down" and "signal_down_background_up" give the W jets the same
    delta."""
    a = attack(sig, "down").delta_applied
    b = attack(sig, "signal_down_background_up").delta_applied
    return bool(np.array_equal(a, b))


def verdict(delta: np.ndarray, boot: np.ndarray, auc: np.ndarray) -> tuple[str, dict[str, float]]:
    """The statement on the seed's finding, from Delta eps_S per network ``(K,)`` (ordered
    by training: first the least trained, last the final one), its replicas ``(n_boot,
    K)`` and the clean AUCs ``(K,)``."""
    slope = float(np.polyfit(auc, delta, 1)[0])
    slopes = np.polyfit(auc, boot.T, 1)[0]
    gap = float(delta[0] - delta[-1])
    gaps = boot[:, 0] - boot[:, -1]
    s_slope, s_gap = float(np.std(slopes, ddof=1)), float(np.std(gaps, ddof=1))
    numbers = {"slope": slope, "slope_std": s_slope, "gap": gap, "gap_std": s_gap}
    if gap > 2 * s_gap and abs(delta[0]) < 0.25 * abs(delta[-1]):
        text = "holds"
    elif gap < -2 * s_gap:
        text = "does not hold: the least-trained network loses MORE eps_S than the final one"
    elif gap > 2 * s_gap:
        text = ("holds only partly: the least-trained network loses less eps_S, but it is "
                "not nearly immune")
    else:
        text = ("is not supported: the least-trained and the final network lose the same "
                "eps_S within the uncertainty")
    return text, numbers


def plot(rows: list[dict[str, Any]], out: Path) -> None:
    """Delta eps_S against clean AUC, with bootstrap error bars, saved to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    run = [r for r in rows if r["epoch"] is not None]
    ax.errorbar([r["auc"] for r in run], [r["delta"] for r in run],
                yerr=[r["delta_std"] for r in run], fmt="o-", color="C0", capsize=3,
                label="PGD against each checkpoint (epoch)")
    if "delta_learned" in run[0]:
        ax.errorbar([r["auc"] for r in run], [r["delta_learned"] for r in run],
                    yerr=[r["delta_learned_std"] for r in run], fmt="^--", color="C2",
                    capsize=3, label="learned adversary against each checkpoint")
    for r in run:
        ax.annotate(str(r["epoch"]), (r["auc"], r["delta"]), textcoords="offset points",
                    xytext=(5, 5), fontsize=8)
    for r in rows:
        if r["epoch"] is None:
            ax.errorbar([r["auc"]], [r["delta"]], yerr=[r["delta_std"]], fmt="s", color="C1",
                        capsize=3, label=f"PGD against the shipped {r['name']}")
    for i, (auc, eff) in enumerate(ISSUE_POINTS.values()):
        ax.plot([auc], [eff - 0.5], "x", color="0.4",
                label="issue 16 quick check (1 epoch; reference)" if i == 0 else None)
    ax.axhline(0.0, color="0.6", lw=0.8)
    ax.set_xlabel("clean test AUC (W vs QCD)")
    ax.set_ylabel(r"$\Delta\epsilon_S$ ($\epsilon$ = 0.02; PGD 10 steps)")
    ax.set_title(r"Undertrained PFNs: $\epsilon_S$ loss at the 50 % working point")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output-dir", type=Path, default=None,
                    help="also write undertrained.json and results_section.md there")
    ap.add_argument("--plot", type=Path, default=Path("docs/img/undertrained.png"),
                    help="the figure (default docs/img/undertrained.png)")
    ap.add_argument("--work-dir", type=Path, default=None,
                    help="where the checkpoints are written (default: a temporary folder)")
    ap.add_argument("--max-jets", type=int, default=None,
                    help="attack every k-th W jet of the test split, at most this many "
                         "(default all)")
    ap.add_argument("--bootstrap", type=int, default=2000, help="bootstrap replicas")
    ap.add_argument("--learned", action="store_true",
                    help="also train a learned adversary against each network (LearnedConfig "
                         "defaults, the default gate, epsilon 0.02; under a minute each)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    test = datasets.load_sample("test")
    sig, bkg = test[test.label == 1], test[test.label == 0]
    if args.max_jets is not None and len(sig) > args.max_jets:
        sig = sig[:: int(np.ceil(len(sig) / args.max_jets))][: args.max_jets]
    tmp = tempfile.TemporaryDirectory() if args.work_dir is None else None
    work = Path(tmp.name) if tmp is not None else args.work_dir
    cfg = T.default_config("pfn", threads=args.threads)
    res = T.train(cfg, work / "pfn_ut.onnx", command="examples/undertrained.py",
                  checkpoints=CHECKPOINTS)
    print(f"trained {cfg.epochs} epochs with checkpoints {list(CHECKPOINTS)} "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    nets = [(f"epoch {k}", k, res.checkpoints[k].model_path) for k in CHECKPOINTS]
    nets += [(f"epoch {cfg.epochs}", cfg.epochs, res.model_path),
             ("pfn", None, MODELS_DIR / "pfn.onnx")]
    rows, clean, attacked, learned = [], [], [], []
    identical = None
    train = datasets.load_sample("train") if args.learned else None
    for name, epoch, path in nets:
        r = evaluate(path, sig, bkg, train)
        if args.learned:
            learned.append(r["learned"])
        if identical is None:
            identical = same_for_both_targets(r["attack"], sig[:100])
        clean.append(r["clean"])
        attacked.append(r["attacked"])
        rows.append({"name": name, "epoch": epoch, "auc": r["auc"],
                     "threshold": r["threshold"], "eff_clean": float(r["clean"].mean()),
                     "eff_attacked": float(r["attacked"].mean())})
        if args.learned:
            rows[-1]["eff_learned"] = float(r["learned"].mean())
            rows[-1]["learned_epoch_kept"] = r["epoch_kept"]
        print(f"{name}: AUC {r['auc']:.4f}, eps_S {rows[-1]['eff_clean']:.3f} -> "
              f"{rows[-1]['eff_attacked']:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    boot = paired_bootstrap(np.array(clean), np.array(attacked), args.bootstrap, SEED)
    for i, r in enumerate(rows):
        r["delta"] = r["eff_attacked"] - r["eff_clean"]
        r["delta_std"] = float(np.std(boot[:, i], ddof=1))
    if args.learned:
        lboot = paired_bootstrap(np.array(clean), np.array(learned), args.bootstrap, SEED)
        for i, r in enumerate(rows):
            r["delta_learned"] = r["eff_learned"] - r["eff_clean"]
            r["delta_learned_std"] = float(np.std(lboot[:, i], ddof=1))
    run = [i for i, r in enumerate(rows) if r["epoch"] is not None]
    auc = np.array([rows[i]["auc"] for i in run])
    text, numbers = verdict(np.array([rows[i]["delta"] for i in run]), boot[:, run], auc)
    plot(rows, args.plot)
    if tmp is not None:
        tmp.cleanup()
    command = "python examples/undertrained.py" + (
        f" -o {args.output_dir}" if args.output_dir is not None else "") + (
        f" --max-jets {args.max_jets}" if args.max_jets is not None else "") + (
        " --learned" if args.learned else "")
    body = [[r["name"], f"{r['auc']:.4f}", f"{r['eff_clean']:.3f}", f"{r['eff_attacked']:.3f}",
             f"{r['delta']:+.3f} ± {r['delta_std']:.3f}",
             f"{100 * r['delta'] / r['eff_clean']:+.1f} %",
             *([f"{r['delta_learned']:+.3f} ± {r['delta_learned_std']:.3f} (epoch "
                f"{r['learned_epoch_kept']})"] if args.learned else [])] for r in rows]
    body += [[k, f"{a:.3f}", "0.50", f"{e:.3f}", f"{e - 0.5:+.3f}", f"{200 * (e - 0.5):+.1f} %",
              *(["-"] if args.learned else [])]
             for k, (a, e) in ISSUE_POINTS.items()]
    headers = ["network", "clean AUC", "eps_S clean", "eps_S PGD", "Delta eps_S", "relative",
               *(["Delta eps_S learned (kept epoch)"] if args.learned else [])]
    least = min(run, key=lambda i: abs(rows[i]["delta"]))
    statement = (
        f"On this sample, Shimmin & Nachman's finding (undertrained classifiers nearly "
        f"immune) {text}. The least-trained network (epoch {CHECKPOINTS[0]}, AUC {auc[0]:.3f}) has "
        f"Delta eps_S {rows[run[0]]['delta']:+.3f} ± {rows[run[0]]['delta_std']:.3f}, the "
        f"final one (epoch {cfg.epochs}, AUC {auc[-1]:.3f}) "
        f"{rows[run[-1]]['delta']:+.3f} ± {rows[run[-1]]['delta_std']:.3f}; their "
        f"difference {numbers['gap']:+.3f} ± {numbers['gap_std']:.3f}; slope of Delta eps_S "
        f"against clean AUC {numbers['slope']:+.2f} ± {numbers['slope_std']:.2f} "
        f"(paired bootstrap, {args.bootstrap} replicas). The dependence is not monotonic: "
        f"the smallest loss is after epoch {rows[least]['epoch']} (AUC "
        f"{rows[least]['auc']:.3f}, Delta eps_S {rows[least]['delta']:+.3f} ± "
        f"{rows[least]['delta_std']:.3f}); no network is nearly immune (every |Delta eps_S| "
        f">= {min(abs(rows[i]['delta']) for i in run):.3f}).")
    if args.learned:
        zero = [rows[i]["name"] for i in run if rows[i]["learned_epoch_kept"] == 0]
        lo = min(rows[i]["delta_learned"] for i in run)
        hi = max(rows[i]["delta_learned"] for i in run)
        statement += (
            f" Under the learned adversary Delta eps_S lies between {lo:+.3f} and {hi:+.3f}; "
            f"for {len(zero)} of {len(run)} networks ({', '.join(zero) or 'none'}) its "
            "training gate kept epoch 0 (no trained perturbation passed), so they show no "
            "loss: a gate-limited learned adversary can make a network look immune that PGD "
            "in the same envelope moves.")
    section = "\n".join([
        "## Undertrained taggers under PGD",
        "",
        f"Regenerate (under ten minutes on one core): `{command}`",
        "",
        f"One PFN run with the reference settings ({cfg.epochs} epochs, seed {cfg.seed}, "
        f"{cfg.threads} thread), exported after epochs {', '.join(map(str, CHECKPOINTS))} and "
        f"{cfg.epochs}, and the shipped `pfn`. Clean AUC on the test split ({len(sig)} W, "
        f"{len(bkg)} QCD jets); eps_S at each network's 50 % working point on {len(sig)} W "
        f"jets before and after PGD (epsilon {EPSILON}, {STEPS} steps, Envelope.uniform, jet "
        "pT and mass restored within 1 %), targets `down` and `signal_down_background_up` "
        f"(identical on W jets: {identical}); Delta eps_S ± paired-bootstrap standard "
        "deviation. Figure: `docs/img/undertrained.png`."
        + (" Learned: a learned adversary g(J) trained against each network on the train "
           "split (LearnedConfig defaults, the default gate, Envelope(): epsilon 0.02, "
           "target down; the epoch its gate kept)." if args.learned else ""),
        "",
        markdown_table(headers, body),
        "",
        statement,
        "",
    ])
    print(section)
    print(f"({time.perf_counter() - t0:.0f} s)")
    if args.output_dir is not None:
        write_json(args.output_dir / "undertrained.json",
                   {"rows": rows, "verdict": text, **numbers, "identical_targets": identical})
        write_text(args.output_dir / "results_section.md", section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
