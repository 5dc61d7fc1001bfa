"""Output directories: the marker, the rules of --force, the lock, killed runs, bad -o."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hepsafe import _files as io
from hepsafe import cli
from hepsafe.data.jets import read_root, write_root
from hepsafe.data.sample import SAMPLE_FILE
from hepsafe.models import MODELS_DIR
from hepsafe.templates import booking as T
from hepsafe.templates import files as templates_io

EDGES = [0.0, 1.0, 2.0, 3.0]


def snapshot(d: Path) -> dict[str, bytes]:
    """Every file under ``d`` (relative name -> bytes), directories as empty entries."""
    return {str(p.relative_to(d)): (p.read_bytes() if p.is_file() else b"")
            for p in sorted(d.rglob("*"))}


def tiny_templates(path: Path) -> Path:
    """Three-bin templates of a signal W and a background B with a two-sided ``jes``."""
    cells = {
        ("SR", "W", "nominal"): (EDGES, [1.0, 2.0, 4.0], [1.0, 2.0, 4.0]),
        ("SR", "B", "nominal"): (EDGES, [20.0, 10.0, 5.0], [20.0, 10.0, 5.0]),
        ("SR", "B", "jes_up"): (EDGES, [21.0, 10.5, 5.5], [21.0, 10.5, 5.5]),
        ("SR", "B", "jes_down"): (EDGES, [19.0, 9.5, 4.6], [19.0, 9.5, 4.6]),
    }
    return templates_io.write_templates(T.from_arrays(cells), path)


def fit_args(templates: Path, out: Path, *extra: str) -> list[str]:
    return ["fit", str(templates), "-o", str(out), "--signal", "W", "--asimov", "--no-limit",
            *extra]


@pytest.fixture
def run_config(run_doc):
    """``run_config(folder, root, max_jets=200, **extra)``: a small run configuration
    ``folder/cfg.yaml`` reading ``root``."""

    def write(folder: Path, root: Path, max_jets: int = 200, **extra) -> Path:
        path = folder / "cfg.yaml"
        path.write_text(yaml.safe_dump(run_doc([root], max_jets=max_jets, **extra)))
        return path

    return write


def one_line_error(capsys, *words: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("hepsafe: error: ") and "\n" not in err, err
    assert "Traceback" not in err
    for w in words:
        assert w in err, (w, err)
    return err


# ------------------------------------------------------------------ the data-loss case
def test_force_never_replaces_a_users_directory(tmp_path, monkeypatch, capsys, run_config):
    """A directory holding a config, a ROOT file and an unrelated file survives
    ``-o . --force`` (from inside) and ``-o DIR --force`` byte for byte."""
    d = tmp_path / "analysis"
    d.mkdir()
    write_root(read_root(SAMPLE_FILE, entry_stop=100), d / "jets.root")
    run_config(d, Path("jets.root"))
    (d / "notes.txt").write_text("my notes\n")
    before, around = snapshot(d), sorted(os.listdir(tmp_path))

    monkeypatch.chdir(d)
    assert cli.main(["run", "cfg.yaml", "-o", ".", "--force"]) == 2
    one_line_error(capsys, str(d), "refused as output directory")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", str(d / "cfg.yaml"), "-o", str(d), "--force"]) == 2
    one_line_error(capsys, str(d), "contains the input")
    assert snapshot(d) == before and sorted(os.listdir(tmp_path)) == around

    # a directory of the user's without any input in it: no marker, refused
    user = tmp_path / "mine"
    user.mkdir()
    (user / "plot.png").write_bytes(b"\x89PNG")
    assert cli.main(["run", str(d / "cfg.yaml"), "-o", str(user), "--force"]) == 2
    one_line_error(capsys, str(user), "no valid .hepsafe-output marker")
    assert snapshot(user) == {"plot.png": b"\x89PNG"}
    assert sorted(os.listdir(tmp_path)) == around + ["mine"]


def test_output_must_not_contain_an_input_or_the_working_directory(tmp_path, monkeypatch,
                                                                   capsys, run_config):
    """The shipped models' folder (the tagger), an input file itself, and a folder above the
    working directory are refused, with or without --force."""
    (tmp_path / "cfgs").mkdir()
    cfg = run_config(tmp_path / "cfgs", SAMPLE_FILE)
    work = tmp_path / "work" / "deep"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    for out, words in ((MODELS_DIR, "contains the input"), (SAMPLE_FILE, "is the input"),
                       (cfg, "is the input"), (work.parent, "contains the working directory")):
        for force in ([], ["--force"]):
            assert cli.main(["run", str(cfg), "-o", str(out), *force]) == 2
            one_line_error(capsys, str(out), words)
    assert sorted(os.listdir(tmp_path)) == ["cfgs", "work"]


def test_bad_output_parent_is_a_one_line_error(tmp_path, monkeypatch, capsys, run_config):
    """-o under a file, under /proc, or onto a file: one line, exit 2, before any work (the
    sample is not a ROOT file: reading it would fail differently)."""
    (tmp_path / "broken.root").write_bytes(b"not a ROOT file")
    cfg = run_config(tmp_path, tmp_path / "broken.root")
    (tmp_path / "afile").write_text("x")
    monkeypatch.chdir(tmp_path)
    cases = ((tmp_path / "afile" / "out", "afile is not a directory"),
             (Path("/proc/hepsafe-test/out"), "cannot create its parent directory /proc"),
             (Path("/proc/hepsafe-test"), "/proc"),  # root: lock file; others: not writable
             (tmp_path / "afile", "exists and is not a directory"))
    for out, words in cases:
        assert cli.main(["run", str(cfg), "-o", str(out)]) == 2
        one_line_error(capsys, str(out), words)
    assert sorted(os.listdir(tmp_path)) == ["afile", "broken.root", "cfg.yaml"]
    assert (tmp_path / "afile").read_text() == "x"


# ------------------------------------------------------------------ the marker and --force
def test_marker_and_force_rules(tmp_path, capsys):
    tpl = tiny_templates(tmp_path / "t.json")
    out = tmp_path / "fit"
    assert cli.main(fit_args(tpl, out)) == 0
    marker = json.loads((out / io.OUTPUT_MARKER).read_text())
    assert marker["writer"] == "hepsafe fit" and marker["format"] == io.MARKER_FORMAT
    assert set(marker["files"]) == set(os.listdir(out)) - {io.OUTPUT_MARKER}
    assert {"fit.json", "workspace.json", "fit.txt", "yields.txt"} <= set(marker["files"])
    capsys.readouterr()

    assert cli.main(fit_args(tpl, out)) == 2  # exists, no --force
    one_line_error(capsys, str(out), "exists; pass --force")
    inode = out.stat().st_ino
    assert cli.main(fit_args(tpl, out, "--force")) == 0  # hepsafe's own: replaced
    assert out.stat().st_ino != inode and (out / io.OUTPUT_MARKER).exists()
    capsys.readouterr()

    for extra in ("notes.txt", "sub"):  # anything the marker does not list: refused
        p = out / extra
        p.mkdir() if extra == "sub" else p.write_text("mine")
        before = snapshot(out)
        assert cli.main(fit_args(tpl, out, "--force")) == 2
        one_line_error(capsys, str(out), f"'{extra}' inside was not written by hepsafe")
        assert snapshot(out) == before
        p.rmdir() if extra == "sub" else p.unlink()
    assert cli.main(fit_args(tpl, out, "--force")) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit", "t.json"]  # no lock, no temp


# ------------------------------------------------------------------ lock and killed runs
def test_lock_and_killed_run(tmp_path, capsys, run_config):
    """A second run into a directory being written fails at once naming the holder's pid; a
    killed run leaves the previous output intact; the next run takes over its lock and
    removes its temporary directory."""
    tpl = tiny_templates(tmp_path / "t.json")
    out = tmp_path / "out"
    assert cli.main(fit_args(tpl, out)) == 0
    previous = snapshot(out)
    cfg = run_config(tmp_path, SAMPLE_FILE, max_jets=2000,
                     attacks=[{"type": "pgd", "epsilon": 0.02, "steps": 10}])
    proc = subprocess.Popen([sys.executable, "-m", "hepsafe.cli", "run", str(cfg), "-o",
                             str(out), "--force", "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        strays: list[Path] = []
        while not strays and time.monotonic() < deadline and proc.poll() is None:
            strays = list(tmp_path.glob(".out.hepsafe-tmp-*"))
            time.sleep(0.05)
        assert strays, "the run did not start its temporary directory"
        lock = io.lock_path(out)
        assert lock.read_text().strip() == str(proc.pid)
        capsys.readouterr()
        assert cli.main(fit_args(tpl, out, "--force")) == 2
        one_line_error(capsys, str(out), f"pid {proc.pid}", "being written")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert snapshot(out) == previous  # the previous output is intact
    assert lock.exists() and all(s.exists() for s in strays)  # what the killed run left

    assert cli.main(fit_args(tpl, out, "--force")) == 0  # stale lock taken over
    assert not lock.exists() and not any(s.exists() for s in strays)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.yaml", "out", "t.json"]
    assert json.loads((out / io.OUTPUT_MARKER).read_text())["pid"] == os.getpid()


def test_output_directory_leaves_target_on_error(tmp_path):
    """An exception inside the block (or an interrupt) leaves the old directory as it was."""
    target = tmp_path / "o"
    with io.output_directory(target) as d:
        (d / "a.txt").write_text("old")
    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)), io.output_directory(target, force=True) as d:
            (d / "a.txt").write_text("new")
            raise exc
        assert (target / "a.txt").read_text() == "old"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]
