"""The README cannot rot: every ``python`` block runs here; every ``sh`` block either
runs here (in bash, against ``sseproto serve``) or, for the install commands, is what
CI runs or installs only extras that exist."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from importlib.metadata import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .cli_helpers import api_env, serving

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.DOTALL)
SHELL = re.findall(r"```sh\n(.*?)```", README, re.DOTALL)
INSTALLS = [block for block in SHELL if block.startswith("pip install")]
RUNNABLE = [block for block in SHELL if block not in INSTALLS]
CI = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
EXTRAS = metadata("sseproto").get_all("Provides-Extra") or []


def test_readme_has_blocks_of_each_kind() -> None:
    assert len(BLOCKS) >= 2
    assert len(INSTALLS) >= 3
    assert len(RUNNABLE) >= 2


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs(code: str) -> None:
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})


def test_ci_runs_the_quick_start_and_the_test_command() -> None:
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)\n```", quick_start, re.DOTALL)
    assert len(commands) == 2  # one to install and run the demo, one to run the tests
    assert "sseproto demo" in commands[0]
    assert "pytest" in commands[1]
    tests = re.search(r"```sh\n(.*?)\n```", README.split("## Run the tests", 1)[1])
    assert tests is not None
    assert tests.group(1) == commands[1]
    for command in commands:
        assert command in CI


@pytest.mark.parametrize("block", INSTALLS, ids=[f"install{i}" for i in range(len(INSTALLS))])
def test_install_commands_name_real_extras(block: str) -> None:
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        assert words[:3] == ["pip", "install", "-e"]
        spec = words[3]
        assert spec.startswith(".")
        extras = re.fullmatch(r"\.(?:\[([a-z,]+)\])?", spec)
        assert extras is not None, spec
        for extra in (extras.group(1) or "").split(","):
            assert not extra or extra in EXTRAS, f"no extra {extra!r} in the package metadata"


@pytest.fixture(scope="module")
def shell_env() -> Iterator[dict[str, str]]:
    """The README's variables, pointing at `sseproto serve` with a flaky task."""
    with serving("--task", "t-readme=flaky", "--interval", "0.05") as settings:
        bin_dir = str(Path(sys.executable).parent)
        yield {
            **os.environ,
            **api_env(settings),
            "TASK_ID": "t-readme",
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        }


@pytest.mark.parametrize("block", RUNNABLE, ids=[f"sh{i}" for i in range(len(RUNNABLE))])
def test_readme_shell_block_runs(block: str, shell_env: dict[str, str], tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        env=shell_env,
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert b"Traceback" not in done.stderr
    assert done.stdout.strip()
