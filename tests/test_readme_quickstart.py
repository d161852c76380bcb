"""Every command the README's quick start shows is real, and its layerenv part runs.

The quick start's ```bash block is parsed and interpreted: ``layerenv base``, ``layerenv project
examples/hello`` (on a copy) and ``layerenv run ...`` from inside it run for real on a replayed
GPU-less machine, torch coming from the fake variant index and ``tqdm`` through this machine's pip
configuration. The fake torch cannot multiply matrices, so ``main.py`` is replaced by a command that
imports torch; ``main.py`` itself is only checked to compile and to use real torch attributes.
Every ``$ layerenv ...`` line of the README's console blocks, and every command in its table, must name a
real command and real flags.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from layerenv.cli.main import COMMANDS, cli
from tests.support.cli import REPO, layerenv_env, run_layerenv

README = REPO / "README.md"
HELLO = REPO / "examples" / "hello"


def quick_start_block() -> list[str]:
    """The command lines (no comments, no blank lines) of the first ```bash block under ## Quick start."""
    text = README.read_text()
    section = text.split("\n## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block, "no ```bash block under ## Quick start"
    return [line.strip() for line in block.group(1).splitlines() if line.strip() and not line.strip().startswith("#")]


def segments(line: str) -> list[list[str]]:
    """``a && (cd x && b)`` -> ``[["a"], ["cd", "x"], ["b"]]``; subshell parentheses only group cds."""
    parts = [part.strip().strip("()").strip() for part in line.split("&&")]
    return [shlex.split(part) for part in parts if part]


def layerenv_command(words: list[str]) -> tuple[str, list[str]]:
    """``["layerenv", "-q", "base", "--json"]`` -> ``("base", ["--json"])``."""
    assert words[0] == "layerenv"
    rest = words[1:]
    while rest and rest[0] in ("-q", "-v", "--quiet", "--verbose"):
        rest = rest[1:]
    assert rest, f"no command in {words}"
    return rest[0], rest[1:]


def test_quick_start_commands_exist() -> None:
    lines = quick_start_block()
    commands = [words for line in lines for words in segments(line)]
    assert ["layerenv", "base"] in commands
    assert ["layerenv", "project", "examples/hello"] in commands
    assert ["layerenv", "run", "python", "main.py"] in commands
    for words in commands:
        if words[0] == "layerenv":
            name, _ = layerenv_command(words)
            assert name in COMMANDS, words
        elif words[:3] == ["python3", "-m", "pip"]:
            assert words[3:] == ["install", "."]
            pyproject = (REPO / "pyproject.toml").read_text()
            assert 'layerenv = "layerenv.cli.entry:main"' in pyproject
        elif words[0] == "bash":
            script = REPO / words[1]
            assert script.is_file(), words
            assert os.access(script, os.R_OK)
        elif words[0] == "cd":
            assert (REPO / words[1]).is_dir(), words
        else:
            pytest.fail(f"the quick start shows a command this test does not know: {words}")


def test_hello_main_compiles_and_uses_real_torch_api() -> None:
    source = (HELLO / "main.py").read_text()
    tree = ast.parse(source)
    compile(tree, str(HELLO / "main.py"), "exec")
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain = []
            current: ast.expr = node
            while isinstance(current, ast.Attribute):
                chain.append(current.attr)
                current = current.value
            if isinstance(current, ast.Name) and current.id == "torch":
                used.add(".".join(["torch", *reversed(chain)]))
    real = {
        "torch.cuda", "torch.cuda.is_available", "torch.cuda.get_device_name", "torch.device", "torch.rand",
        "torch.randn", "torch.ones", "torch.zeros", "torch.matmul", "torch.__version__", "torch.__file__",
        "torch.version", "torch.version.cuda", "torch.version.hip", "torch.backends", "torch.float32",
    }
    assert used and used <= real, used - real
    from packaging.requirements import Requirement

    for line in (HELLO / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert Requirement(line).name not in ("torch", "torchvision", "torchaudio"), line


@pytest.mark.slow
def test_quick_start_runs(tmp_path: Path, variant_indexes, installer_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    """Interpret the quick start's layerenv commands for real (pip install . is the environment running us).

    The base is built without this machine's pip configuration (its find-links hold a real torch), so the
    fake cpu torch is the one chosen; the project step then uses the machine's configuration for tqdm.
    """
    clone = tmp_path / "clone"
    shutil.copytree(HELLO, clone / "examples" / "hello", ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    env = layerenv_env(
        tmp_path / "home",
        base_env=os.environ,  # this machine's pip configuration: tqdm comes from its registry
        machine="no-gpu",
        extra={"LAYERENV_INDEX_URL": variant_indexes.url_template},
    )
    ran: list[str] = []
    line = quick_start_block()[0]
    cwd = clone
    for words in segments(line):
        if words[0] == "cd":
            cwd = cwd / words[1]
            continue
        if words[0] != "layerenv":
            continue  # `python3 -m pip install .`: layerenv runs from this checkout (PYTHONPATH)
        name, arguments = layerenv_command(words)
        if name == "run" and arguments == ["python", "main.py"]:
            arguments = ["python", "-c", "import torch, tqdm; print(torch.__version__, torch.__file__)"]
        step_env = {**env, **{k: v for k, v in installer_env.items() if k.startswith("PIP_")}} if name == "base" else env
        if name == "base":
            step_env = {k: v for k, v in step_env.items() if k in installer_env or not k.startswith("PIP_")}
        result = run_layerenv([name, *arguments], step_env, cwd)
        assert result.returncode == 0, f"{words}: {result.stderr}"
        ran.append(name)
        if name == "base":
            assert "2.9.1+cpu" in result.stdout
        if name == "project":
            assert (clone / "examples" / "hello" / ".venv").is_dir()
        if name == "run":
            version, location = result.stdout.split()
            assert version == "2.9.1+cpu"
            assert location.startswith(str(tmp_path / "home" / "bases"))
    assert ran == ["base", "project", "run"]


def shown_commands() -> list[tuple[str, list[str], str]]:
    """``(command, words, where)`` of every ``$ ... layerenv ...`` console line and commands-table row."""
    text = README.read_text()
    found = []
    for block in re.findall(r"```console\n(.*?)```", text, re.DOTALL):
        for raw in block.splitlines():
            if not raw.startswith("$ "):
                continue
            line = raw[2:].split("  #", 1)[0].split(" # ", 1)[0]
            for words in segments(line):
                if words and words[0] == "layerenv":
                    name, rest = layerenv_command(words)
                    found.append((name, rest, raw))
    for row in re.findall(r"^\| `(layerenv [^`]*)` \|", text, re.MULTILINE):
        name, rest = layerenv_command(row.split())
        found.append((name, rest, row))
    return found


def test_readme_shows_only_real_commands_and_flags() -> None:
    shown = shown_commands()
    assert len(shown) >= 10
    helps: dict[str, str] = {}
    for name, rest, where in shown:
        assert name in COMMANDS, where
        if name not in helps:
            result = CliRunner().invoke(cli, [name, "--help"])
            assert result.exit_code == 0, result.output
            helps[name] = result.output
        for word in rest:
            for flag in re.findall(r"--[a-z][a-z0-9-]*", word):
                if name == "run":
                    break  # everything after `run` is the user's command
                assert re.search(rf"(^|[\s,/]){re.escape(flag)}\b", helps[name]), f"{flag} of {where}"
