"""Linking again removes the family console-script wrappers an earlier link wrote and this one did not,
and nothing else in bin/ (found by the wrapper's mark; interpreters and activation scripts are not opened)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from layerenv.project.stubs import WRAPPER_MARK, remove_stale
from layerenv.venv.layout import VenvLayout


@pytest.mark.skipif(sys.platform == "win32", reason="no wrappers on Windows: console scripts are .exe launchers")
def test_only_stale_wrappers_are_removed(tmp_path: Path) -> None:
    layout = VenvLayout(tmp_path / "venv", windows=False)
    layout.bin_dir.mkdir(parents=True)

    def put(name: str, text: str, mode: int) -> Path:
        path = layout.script(name)
        path.write_text(text)
        path.chmod(mode)
        return path

    wrapper = f"#!{layout.python}\n{WRAPPER_MARK}: torch console script of the base\nimport sys\n"
    stale = put("torchfrob", wrapper, 0o755)  # the old base's script, which the new base lacks
    kept = put("torchrun", wrapper, 0o755)  # written again by this link
    pip = put("pip", f"#!{layout.python}\nimport sys\nfrom pip._internal.cli.main import main\n", 0o755)
    big = put("python", "\x7fELF" + "\0" * 20_000, 0o755)
    activate = put("activate", f"# {WRAPPER_MARK} is quoted in this script\n", 0o644)

    remove_stale(layout, [], stubs=(), scripts={"torchrun"})

    assert not stale.exists()
    assert kept.exists() and pip.exists() and big.exists() and activate.exists()


def test_a_venv_without_bin_has_nothing_to_remove(tmp_path: Path) -> None:
    remove_stale(VenvLayout(tmp_path / "missing", windows=False), [], stubs=(), scripts=())
