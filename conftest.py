"""Collection rules for `python -m pytest`: the package's doctests run with the tests, except
in the modules of optional extras that are not installed."""

from __future__ import annotations

import importlib.util

#: optional extra -> the modules that need it
_EXTRAS = {"coffea": ["hepsafe/coffea/*.py"]}

collect_ignore_glob = [
    pattern
    for package, patterns in _EXTRAS.items()
    if importlib.util.find_spec(package) is None
    for pattern in patterns
]
