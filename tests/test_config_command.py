"""``layerenv config`` (every setting, its value and source) and shell completion through the entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from layerenv.cli.main import COMMANDS
from layerenv.config import SETTINGS
from tests.support.cli import layerenv_env, run_layerenv


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return layerenv_env(tmp_path / "home", base_env=os.environ, machine="no-gpu")


def test_config_table_names_every_setting_with_its_source(tmp_path: Path, env: dict[str, str]) -> None:
    project = tmp_path / "repo"
    project.mkdir()
    (project / "layerenv.toml").write_text('[torch]\nchannel = "nightly"\n[base]\npackages = ["torch"]\n')
    env = {**env, "LAYERENV_VARIANT": "cu128", "LAYERENV_EXTRA_INDEX_URL": "https://user:secret@mirror/simple"}
    result = run_layerenv(["config"], env, project)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["key", "value", "source"]
    rows = {line.split()[0]: line for line in lines[1 : 1 + len(SETTINGS)]}
    assert list(rows) == [spec.key for spec in SETTINGS]
    assert rows["torch.variant"].split()[1:] == ["cu128", "LAYERENV_VARIANT"]
    assert rows["torch.channel"].split()[1:] == ["nightly", str(project / "layerenv.toml")]
    assert rows["base.packages"].split()[1:] == ["[torch]", str(project / "layerenv.toml")]
    assert rows["torch.strict"].split()[1:] == ["false", "default"]
    assert rows["store.home"].split()[1:] == [str(tmp_path / "home"), "LAYERENV_HOME"]
    assert "secret" not in result.stdout and "https://***@mirror/simple" in result.stdout
    assert lines[1 + len(SETTINGS)] == "files"
    assert lines[2 + len(SETTINGS) :][:2] == [
        f"  {project / 'layerenv.toml'}", "installer settings (outside layerenv; they change what pip and uv find)"]


def test_config_json(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n[tool.layerenv.torch]\nstrict = true\n')
    result = run_layerenv(["config", "--json"], {**env, "PYTORCH_FORCE_NIGHTLY": "1"}, tmp_path)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) == {"settings", "files", "installers"}
    assert list(document["settings"]) == [spec.key for spec in SETTINGS]
    settings = document["settings"]
    assert settings["torch.strict"] == {"value": True, "source": str(tmp_path / "pyproject.toml")}
    assert settings["torch.channel"] == {"value": "nightly", "source": "PYTORCH_FORCE_NIGHTLY"}
    assert settings["torch.variant"] == {"value": "auto", "source": "default"}
    assert settings["base.packages"]["value"] == ["torch", "torchvision", "torchaudio"]
    assert document["files"] == [str(tmp_path / "pyproject.toml")]


@pytest.mark.parametrize(
    ("config", "extra", "expected"),
    [
        ('[torch]\nvariant = "cu999"\n', {}, "torch.variant = 'cu999' is not known"),
        ("[torch]\nflavour = 1\n", {}, "unknown key 'torch.flavour'"),
        ("", {"LAYERENV_STRICT": "maybe"}, "LAYERENV_STRICT='maybe'"),
        ("", {"LAYERENV_CONFIG": "/nonexistent/x.toml"}, "LAYERENV_CONFIG='/nonexistent/x.toml': no such file"),
    ],
)
def test_bad_config_is_one_line_and_exit_2(
    tmp_path: Path, env: dict[str, str], config: str, extra: dict[str, str], expected: str
) -> None:
    (tmp_path / "layerenv.toml").write_text(config)
    for arguments in (["config"], ["config", "--json"]):
        result = run_layerenv(arguments, {**env, **extra}, tmp_path)
        assert result.returncode == 2
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("layerenv: error: ")
        assert expected in result.stderr


def test_config_is_listed_in_help(tmp_path: Path, env: dict[str, str]) -> None:
    assert "config" in COMMANDS
    result = run_layerenv(["--help"], env, tmp_path)
    assert result.returncode == 0 and "config" in result.stdout


# --- shell completion, through the console-script entry point (layerenv.entry:main) ---


def _console_script(directory: Path) -> Path:
    """A ``layerenv`` executable like the one pip writes for ``layerenv = "layerenv.entry:main"``."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "layerenv"
    script.write_text(f"#!{sys.executable}\nimport sys\nfrom layerenv.entry import main\nsys.argv[0] = 'layerenv'\nmain()\n")
    script.chmod(0o755)
    return script


@pytest.mark.parametrize(("shell", "marker"), [("bash", "complete -o"), ("zsh", "#compdef layerenv"), ("fish", "complete")])
def test_completion_source_scripts(tmp_path: Path, env: dict[str, str], shell: str, marker: str) -> None:
    script = _console_script(tmp_path / "bin")
    result = subprocess.run(
        [str(script)], env={**env, "_LAYERENV_COMPLETE": f"{shell}_source"}, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "_layerenv_completion" in result.stdout and marker in result.stdout
    assert "_LAYERENV_COMPLETE" in result.stdout


def test_bash_completion_works_end_to_end(tmp_path: Path, env: dict[str, str]) -> None:
    """Source the generated script in bash, then complete commands and a command's flags."""
    bin_dir = tmp_path / "bin"
    _console_script(bin_dir)
    program = """
eval "$(_LAYERENV_COMPLETE=bash_source layerenv)"
complete -p layerenv
COMP_WORDS=(layerenv co); COMP_CWORD=1; COMPREPLY=(); _layerenv_completion layerenv; echo "commands: ${COMPREPLY[*]}"
COMP_WORDS=(layerenv ''); COMP_CWORD=1; COMPREPLY=(); _layerenv_completion layerenv; echo "all: ${COMPREPLY[*]}"
COMP_WORDS=(layerenv config --); COMP_CWORD=2; COMPREPLY=(); _layerenv_completion layerenv; echo "flags: ${COMPREPLY[*]}"
COMP_WORDS=(layerenv detect --); COMP_CWORD=2; COMPREPLY=(); _layerenv_completion layerenv; echo "detect: ${COMPREPLY[*]}"
"""
    run_env = {**env, "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}"}
    result = subprocess.run(["bash", "-c", program], env=run_env, capture_output=True, text=True, check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    assert "_layerenv_completion" in result.stdout  # `complete -p layerenv` shows it is registered
    assert out["commands"].split() == ["config"]
    assert set(out["all"].split()) == set(COMMANDS)
    assert "--json" in out["flags"].split()
    assert {"--json", "--explain"} <= set(out["detect"].split())


def test_entry_point_sends_completion_to_click(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """With ``_LAYERENV_COMPLETE`` set the shell passes no arguments, so no fast path answers."""
    from layerenv.cli import entry

    def no_fast_path(as_json: bool) -> int:
        raise AssertionError("a fast path answered a completion request")

    monkeypatch.setattr(entry, "_detect", no_fast_path)
    monkeypatch.setattr(entry, "_reuse_base", no_fast_path)
    monkeypatch.setattr(sys, "argv", ["layerenv"])
    with mock.patch.dict(os.environ, {"_LAYERENV_COMPLETE": "bash_source"}), pytest.raises(SystemExit) as exited:
        entry.main()
    assert exited.value.code == 0
    assert "complete -o nosort -F _layerenv_completion layerenv" in capsys.readouterr().out
