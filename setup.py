"""Build script: compiles the parser core with mypyc when it can, and falls back to
pure Python when it cannot (no C compiler, not CPython, or SSEPROTO_NO_EXTENSIONS set).

All metadata lives in pyproject.toml; this file only adds the optional extension.
"""

from __future__ import annotations

import os
import platform
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

COMPILED = ["sseproto/_core.py"]


class optional_build_ext(build_ext):
    """build_ext that warns and leaves the pure-Python core in place if compiling fails."""

    failed = False

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # a missing compiler surfaces as several error types
            self._skip(exc)

    def build_extension(self, ext: object) -> None:
        if self.failed:  # the core and its shim go together: all or none
            return
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._skip(exc)

    def _skip(self, exc: Exception) -> None:
        self.failed = True
        print(
            f"warning: sseproto's compiled parser could not be built ({exc}); "
            "installing the pure-Python parser, which is correct but slower",
            file=sys.stderr,
        )


def extensions() -> list[object]:
    if os.environ.get("SSEPROTO_NO_EXTENSIONS") or platform.python_implementation() != "CPython":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        return []
    # mypyc type-checks the package around the core too; the build environment has
    # no trio or h11 (runtime dependencies), which only the transport uses.
    try:
        return list(mypycify(["--ignore-missing-imports", *COMPILED], opt_level="3"))
    except (Exception, SystemExit) as exc:  # mypyc exits on a type error it finds
        print(
            f"warning: mypyc could not compile sseproto's parser ({exc!r}); installing "
            "the pure-Python parser, which is correct but slower",
            file=sys.stderr,
        )
        return []


setup(ext_modules=extensions(), cmdclass={"build_ext": optional_build_ext})
