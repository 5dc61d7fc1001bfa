"""The run report: ``report.md`` and a self-contained ``report.html`` (figures embedded),
built from the same dicts written to ``summary.json``, ``gate.json`` and ``fit.json``."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hepsafe._files import write_text
from hepsafe.data.regions import Region
from hepsafe.report.figures import CAPTIONS
from hepsafe.report.tables import format_table, markdown_table

SUMMARY_COLUMNS = [
    ("name", "variation"),
    ("kind", "kind"),
    ("auc", "AUC"),
    ("eff_sig", "eff_S@WP"),
    ("rel_eff_sig", "d eff_S"),
    ("eff_bkg", "eff_B@WP"),
    ("sig_over_sqrt_bkg_change", "d(eS/sqrt(eB))"),
    ("fooling_rate_sig", "fooled"),
    ("gate", "gate"),
]


def summary_rows(summary: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of the summary table (one row per nominal/variation/attack)."""
    header = [h for _, h in SUMMARY_COLUMNS]
    rows = [[r.get(k, "") for k, _ in SUMMARY_COLUMNS] for r in summary]
    return header, rows


def summary_text(summary: Sequence[Mapping[str, Any]]) -> str:
    """The summary table as fixed-width text (what ``hepsafe demo`` prints)."""
    header, rows = summary_rows(summary)
    return format_table(header, rows, floatfmt=".4f")


def _fit_tables(fit: Mapping[str, Any]) -> list[str]:
    out = ["### mu-hat with and without each nuisance parameter", ""]
    out.append(markdown_table(["fit", "mu-hat", "sigma_mu"],
                              [[r["fit"], r["mu"], r["sigma_mu"]] for r in fit["mu"]],
                              floatfmt=".4f"))
    out += ["", "### Impacts on mu (post-fit +-1 sigma, refit), ranked", ""]
    out.append(markdown_table(["rank", "parameter", "dmu (+1 sigma)", "dmu (-1 sigma)"],
                              [[r["rank"], r["name"], r["up"], r["down"]]
                               for r in fit["impacts"]], floatfmt=".4f"))
    out += _adversarial_tables(fit)
    ul, sig = fit.get("upper_limit"), fit["significance"]
    out.append("")
    if ul:
        out.append(f"CLs upper limit on mu (95 % CL, Asimov data at mu = 1): observed "
                   f"{ul['observed']:.3f}, expected {ul['expected'][2]:.3f} "
                   f"[{ul['expected'][1]:.3f}, {ul['expected'][3]:.3f}].")
    out.append(f"Expected discovery significance: {sig['expected']:.2f} sigma.")
    return out


def _adversarial_tables(fit: Mapping[str, Any]) -> list[str]:
    """The statistical and systematic uncertainty of mu-hat beside the worst-case band of
    each adversarial parameter, and the variations left out of (or kept in) the fit."""
    out: list[str] = []
    rows = {r["fit"]: r for r in fit["mu"]}
    worst = fit.get("worst_case") or {}
    if worst and "all variations" in rows and "no variations" in rows:
        total, stat = rows["all variations"]["sigma_mu"], rows["no variations"]["sigma_mu"]
        syst = max(total * total - stat * stat, 0.0) ** 0.5
        theta = {r["name"]: r for r in fit.get("adversarial", [])}
        out += ["", "### Adversarial parameters: worst-case band", "",
                f"mu-hat = {rows['all variations']['mu']:.4f} +- {stat:.4f} (stat) +- "
                f"{syst:.4f} (syst, every parameter free). Each adversarial parameter theta "
                "in [0, 1] has a flat prior; its worst-case band is mu-hat(theta = 1) - "
                "mu-hat(theta = 0), every other parameter profiled (docs/STATISTICS.md).", ""]
        out.append(markdown_table(
            ["parameter", "theta-hat", "68 % upper edge", "bounds", "mu-hat (theta=0)",
             "mu-hat (theta=1)", "worst-case dmu"],
            [[n, theta[n]["value"] if n in theta else float("nan"),
              theta.get(n, {}).get("upper_68", float("nan")), "[0, 1]", w["mu_at_0"],
              w["mu_at_1"], w["delta_mu"]] for n, w in worst.items()], floatfmt=".4f"))
    norms = fit.get("normfactors") or []
    if norms:
        out += ["", "Free normalisations, shared by every channel: " + ", ".join(
            f"`{r['name']}` = {r['value']:.4f} +- {r['error']:.4f}" for r in norms) + "."]
    left = fit.get("left_out") or {}
    if left:
        out += ["", "Left out of the fit, failed the control-region gate "
                "(`fit: {include_failed: true}` keeps them): " + "; ".join(
                    f"`{n}` ({', '.join(c)})" for n, c in left.items()) + "."]
    kept = fit.get("included_failed") or []
    if kept:
        out += ["", "In the fit although they failed the control-region gate "
                f"(`fit: {{include_failed: true}}`): {', '.join(f'`{n}`' for n in kept)}."]
    return out


def _events(n: float | None) -> str:
    return "never" if n is None else f"{n:.3g}"


def _gate_table(gates: Mapping[str, Any]) -> list[str]:
    rows = []
    for name, rep in gates.items():
        def stat(var: str, rep: Any = rep) -> float | str:
            names = [v.variable for v in rep.variables]
            return rep.stats(var).ks if var in names else ""
        corr = [c.value for c in rep.checks
                if c.variable == "correlation" and c.statistic == "corr_frobenius"]
        rows.append([name, "pass" if rep.passed else "FAIL", stat("jet_pt"), stat("jet_mass"),
                     stat("score"), corr[0] if corr else "", ", ".join(rep.failed) or "-"])
    out = [markdown_table(["variation", "gate", "KS jet pT", "KS jet mass", "KS score",
                           "corr. change", "failed checks"], rows, floatfmt=".4f")]
    calibrated = {n: r.calibration for n, r in gates.items() if r.calibration is not None}
    if calibrated:
        first = next(iter(calibrated.values()))
        sizes = [a.n_data for a in first.combined.at]
        n_sim = "exact" if first.n_sim == float("inf") else f"{first.n_sim:.0f}"
        out += ["", f"The gate is calibrated to the control region's size "
                f"(docs/STATISTICS.md): would {first.n_data:.0f} control-region events of "
                f"data drawn from the perturbed sample disagree with a simulation of "
                f"{n_sim} effective events? Combined false-alarm rate alpha = "
                f"{first.alpha:.3g}, each test at {first.local_alpha:.3g} "
                f"({first.local_alpha_method}). Per variation: the combined p-value, the "
                "control-region size at which it becomes visible (with the simulation as "
                "given, and exact), and its verdict at other sizes.", ""]
        head = ["variation", "p (combined)", "visible from N", "visible from N (exact sim)",
                "first test to flip"]
        head += [f"N = {n:.3g}" for n in sizes] + [f"N = {n:.3g}, exact sim" for n in sizes]
        crow = []
        for name, cal in calibrated.items():
            c = cal.combined
            flips = [t.name for t in cal.tests
                     if t.flip_events_infinite_sim is not None
                     and t.flip_events_infinite_sim == c.flip_events_infinite_sim]
            crow.append([name, f"{c.p_value:.3g}", _events(c.flip_events),
                         _events(c.flip_events_infinite_sim), ", ".join(flips) or "-"]
                        + ["hidden" if a.passed else "visible" for a in c.at]
                        + ["hidden" if a.passed else "visible" for a in c.at_infinite_sim])
        out.append(markdown_table(head, crow))
    return out


def _region_lines(region: Region) -> list[str]:
    if not region.cuts:
        return []
    return ["", f"Signal region: {region.describe()}, applied again to the jets of every "
            "variation and attack: the templates, AUC and `fooled` use each one's jets in the "
            "region, and the efficiencies are relative to the nominal jets in it (jets moved "
            "out count as lost). The gate compares all control jets."]


def _fit_section(fit: Mapping[str, Any], fit_note: str) -> list[str]:
    if not fit:
        return [f"The fit was not done: {fit_note}." if fit_note else "The fit was not done.",
                "",
                "Remedies for empty background bins: fewer `observable/bins`, "
                "`fit: {merge_empty_bins: true}` (merges them with a neighbour), or "
                "`fit: {skip: true}` (docs/RUN.md, section fit). The templates are in "
                "`templates.root` and `templates.json` (`hepsafe fit` fits them)."]
    return [*_fit_tables(fit), "",
            "Files: `workspace.json` (patched), `patch.json` (RFC 6902 patch adding the "
            "variations to the nominal-only workspace), `templates.root`, `fit.json`, "
            "`provenance.json`."]


def markdown(cfg: Any, summary: Sequence[Mapping[str, Any]], gates: Mapping[str, Any],
             fit: Mapping[str, Any], figures: Sequence[str],
             provenance: Mapping[str, Any], fit_note: str = "") -> str:
    """The report as markdown; ``fit`` empty: the fit was not done, ``fit_note`` says why."""
    header, rows = summary_rows(summary)
    wp = cfg.working_point
    lines = [
        "# hepsafe report",
        "",
        f"Tagger `{Path(provenance['tagger']['path']).name}` on "
        f"{provenance['tagger']['provider']}; "
        f"seed {provenance['seed']}; configuration `{provenance['config_source']}`.",
        f"Regenerate: `hepsafe run {provenance['config_source']} --force` "
        "(or `hepsafe demo --force` for the shipped demo).",
        "",
        "## Summary",
        "",
        f"Working point: {100 * wp:g} % signal efficiency on the nominal signal scores; "
        "eff_S/eff_B are the efficiencies at that fixed threshold, `d eff_S` the relative "
        "change of the signal efficiency, `fooled` the fraction of signal jets whose decision "
        f"flips, `gate` the control-region verdict on `{cfg.control}`.",
        *_region_lines(cfg.region),
        "",
        markdown_table(header, rows, floatfmt=".4f"),
        "",
        "## Control-region gate",
        "",
        *_gate_table(gates),
        "",
        "Every check, with its limit: `gate.json`.",
        "",
        "## Fit",
        "",
        *_fit_section(fit, fit_note),
        "",
    ]
    if figures:
        lines += ["## Figures", ""]
        for f in figures:
            lines += [f"![{CAPTIONS.get(f, f)}]({f})", "", f"*{CAPTIONS.get(f, f)}*", ""]
    return "\n".join(lines)


def _md_to_html(md: str, out: Path) -> str:
    """A small markdown subset (headings, tables, images, paragraphs) to HTML, with the
    images embedded as base64 so the file stands alone."""
    body: list[str] = []
    lines = md.splitlines()
    i = 0

    def inline(text: str) -> str:
        t = html.escape(text)
        parts = t.split("`")
        return "".join(f"<code>{p}</code>" if k % 2 else p for k, p in enumerate(parts))

    while i < len(lines):
        ln = lines[i]
        if ln.startswith("#"):
            level = len(ln) - len(ln.lstrip("#"))
            body.append(f"<h{level}>{inline(ln[level:].strip())}</h{level}>")
        elif ln.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append([c.strip() for c in lines[i].strip("|").split("|")])
                i += 1
            head, data = rows[0], [r for r in rows[2:]]
            body.append("<table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in head) + "</tr>")
            for r in data:
                cls = ' class="fail"' if "FAIL" in r else ""
                body.append(f"<tr{cls}>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>")
            body.append("</table>")
            continue
        elif ln.startswith("![") and "](" in ln:
            alt = ln[2 : ln.index("](")]
            src = ln[ln.index("](") + 2 : -1]
            png = base64.b64encode((out / src).read_bytes()).decode()
            body.append(f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{png}">')
        elif ln.startswith("*") and ln.endswith("*"):
            body.append(f"<p class='caption'>{inline(ln.strip('*'))}</p>")
        elif ln.strip():
            body.append(f"<p>{inline(ln)}</p>")
        i += 1
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;"
        "padding:3px 8px;text-align:right}th{background:#eee}tr.fail td{background:#fdd}"
        "img{max-width:100%}.caption{font-style:italic;color:#555}"
    )
    return ("<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>hepsafe report</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_reports(out: Path, cfg: Any, summary: Sequence[Mapping[str, Any]],
                  gates: Mapping[str, Any], fit: Mapping[str, Any], figures: Sequence[str],
                  provenance: Mapping[str, Any], fit_note: str = "") -> list[Path]:
    """Write ``report.md`` and ``report.html`` into ``out`` (atomically); ``fit`` empty:
    the fit was not done, ``fit_note`` says why."""
    md = markdown(cfg, summary, gates, fit, figures, provenance, fit_note)
    return [write_text(out / "report.md", md), write_text(out / "report.html",
                                                          _md_to_html(md, out))]
