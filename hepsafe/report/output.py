"""Writing results atomically: a file appears whole or not at all (a temporary file beside
it, renamed into place), for scripts that write their own tables and JSON."""

from __future__ import annotations

from hepsafe._files import atomic_path, write_json, write_text

__all__ = ["atomic_path", "write_json", "write_text"]
