"""Every error and warning class of the package is defined in hepsafe.exceptions, and the
modules that offered one before still hand out the same class."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import warnings

import pytest

import hepsafe
from hepsafe import exceptions


def _modules():
    for info in pkgutil.walk_packages(hepsafe.__path__, "hepsafe."):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield importlib.import_module(info.name)
        except ImportError:  # an optional extra that is not installed
            continue


def test_every_error_and_warning_class_lives_in_exceptions():
    defined, seen = {}, set()
    for module in _modules():
        seen.add(module.__name__)
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__ == module.__name__ and not name.startswith("_")):
                defined[f"{module.__name__}.{name}"] = obj
    outside = sorted(k for k in defined if not k.startswith("hepsafe.exceptions."))
    assert not outside, f"define these in hepsafe/exceptions.py: {outside}"
    # the walk saw the modules the classes came from, and the classes themselves
    assert {"hepsafe.pipeline.runner", "hepsafe.attacks.registry", "hepsafe.cli"} <= seen
    assert {"hepsafe.exceptions.FitFailed", "hepsafe.exceptions.MirrorWarning"} <= set(defined)


@pytest.mark.parametrize(("module", "name"), [
    ("hepsafe.pipeline", "FitFailed"),
    ("hepsafe.pipeline", "GateFailed"),
    ("hepsafe.pipeline.runner", "FitFailed"),
    ("hepsafe.pipeline.runner", "GateFailed"),
    ("hepsafe.attacks", "AttackFallbackWarning"),
    ("hepsafe.attacks.registry", "AttackFallbackWarning"),
    ("hepsafe.coffea.run", "SkippedFilesWarning"),
])
def test_old_import_paths_give_the_same_class(module, name):
    if module.startswith("hepsafe.coffea"):
        pytest.importorskip("coffea")
    assert getattr(importlib.import_module(module), name) is getattr(exceptions, name)


def test_moved_classes_keep_their_bases():
    assert issubclass(exceptions.FitFailed, exceptions.FitError)
    assert not issubclass(exceptions.GateFailed, exceptions.HepsafeError)
    for cls in (exceptions.AttackFallbackWarning, exceptions.SkippedFilesWarning):
        assert issubclass(cls, UserWarning)
