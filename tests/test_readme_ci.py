"""The README's first commands are exactly what CI runs."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    lines = (ROOT / "README.md").read_text().splitlines()
    return [ln.strip() for ln in lines[:10] if ln.startswith("    ")][:2]


def test_readme_opens_with_two_commands():
    install, test = _readme_commands()
    assert "pip install" in install and "hepsafe demo" in install
    assert "pytest" in test


def test_ci_runs_the_readme_commands():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    for cmd in _readme_commands():
        assert cmd in ci, cmd
    assert "ruff check ." in ci


def test_readme_table_is_what_the_demo_prints(tmp_path):
    """The table under 'What you get' is the summary `hepsafe demo` prints, digit for digit."""
    from hepsafe.pipeline import config as config
    from hepsafe.pipeline import runner as pipeline
    from hepsafe.report import document as report

    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("variation ") and "AUC" in ln)
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("```"))
    cfg = config.load(config.DEMO_CONFIG).with_output(tmp_path / "demo")
    result = pipeline.run(cfg, quiet=True)
    assert report.summary_text(result.summary).strip().splitlines() == lines[start:end]
