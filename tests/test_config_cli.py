"""Settings precedence, config-file errors, and the detect command's contract (flags, JSON, exit codes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from layerenv.cli.main import cli
from layerenv.config import SETTINGS, load_settings, read_config_file
from layerenv.errors import ConfigError
from tests.support.cli import FIXTURE_MACHINES, REPO


def invoke(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    runner = CliRunner()
    base_env = {"LAYERENV_SYSROOT": str(FIXTURE_MACHINES / "h100-580"), "LAYERENV_HOME": str(cwd / "home")}
    result = runner.invoke(cli, args, env={**base_env, **env})
    return result.exit_code, result.stdout, result.stderr


def test_repository_example_config_documents_every_setting_with_its_default() -> None:
    values = read_config_file(REPO / "layerenv.toml")
    assert set(values) == {spec.key for spec in SETTINGS}
    assert all(values[spec.key] == spec.default for spec in SETTINGS)
    text = (REPO / "layerenv.toml").read_text()
    for spec in SETTINGS:
        if spec.env:
            assert spec.env in text or spec.env in (REPO / "README.md").read_text(), spec.env


def test_precedence_flags_over_env_over_files(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.layerenv.torch]\nvariant = "cu126"\nchannel = "nightly"\n')
    (tmp_path / "layerenv.toml").write_text('[torch]\nvariant = "cu128"\n')
    settings = load_settings(project_dir=tmp_path, env={})
    assert settings.get("torch.variant") == "cu128" and settings.sources["torch.variant"].endswith("layerenv.toml")
    assert settings.get("torch.channel") == "nightly" and "[tool.layerenv]" not in settings.sources["torch.channel"]
    env = {"LAYERENV_VARIANT": "cu130", "PYTORCH_FORCE_STABLE": "true"}
    settings = load_settings(project_dir=tmp_path, env=env)
    assert (settings.get("torch.variant"), settings.sources["torch.variant"]) == ("cu130", "LAYERENV_VARIANT")
    assert (settings.get("torch.channel"), settings.sources["torch.channel"]) == ("stable", "PYTORCH_FORCE_STABLE")
    settings = load_settings(project_dir=tmp_path, env=env, flags={"torch.variant": "cpu"})
    assert (settings.get("torch.variant"), settings.sources["torch.variant"]) == ("cpu", "command line")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('[torch]\nvariant = "cu999"\n', "torch.variant = 'cu999' is not known"),
        ("[torch]\nstrict = 'yes'\n", "torch.strict must be true or false"),
        ("[torch]\nflavour = 'x'\n", "unknown key 'torch.flavour'"),
        ("[base]\npackages = 'torch'\n[base.x]\n", "unknown key 'base.x'"),
        ("[index]\nurl = 'ftp://mirror/{variant}'\n", "must start with https://"),
        ("[index]\nurl = 'https://mirror/{flavour}'\n", "only contain the placeholder {variant}"),
        ("[torch\nvariant=", "not valid TOML"),
        ("torch = 3\n", "'torch' must be a table"),
        ("[torch]\nversion = 'latest!'\n", "not a version specifier"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "layerenv.toml"
    path.write_text(content)
    with pytest.raises(ConfigError) as error:
        load_settings(project_dir=tmp_path, env={})
    assert str(path) in error.value.message and expected in error.value.message
    assert "\n" not in error.value.message


def test_non_utf8_config_is_a_clean_error(tmp_path: Path) -> None:
    (tmp_path / "layerenv.toml").write_bytes(b"[torch]\nvariant = \"\xff\xfe\"\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings(project_dir=tmp_path, env={})


def test_detect_json_contract(tmp_path: Path) -> None:
    code, out, _ = invoke(["detect", "--json"], {}, tmp_path)
    assert code == 0
    document = json.loads(out)
    assert {"variant", "torch", "channel", "driver_version", "cuda_driver", "gpus", "reasons"} <= set(document)
    assert document["variant"] == "cu132" and document["driver_version"] == "580.159.04"
    assert document["cuda_driver"] == "13.0"
    assert document["gpus"] == [
        {"index": 0, "vendor": "nvidia", "name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0",
         "gfx": None, "served": True}
    ]


def test_detect_text_and_explain(tmp_path: Path) -> None:
    code, out, _ = invoke(["detect", "--explain"], {}, tmp_path)
    assert code == 0
    assert "variant  cu132" in out and "compute capability 9.0" in out
    assert not any(line.split()[:2] == ["2.15", "cu126"] for line in out.splitlines()), "2.15 has no cu126 build"
    assert any(line.split()[:3] == ["2.14", "cu126", "kept"] for line in out.splitlines())
    assert any(line.split()[:3] == ["2.15", "cu130", "kept"] for line in out.splitlines())


def test_overrides_and_switches(tmp_path: Path) -> None:
    code, out, _ = invoke(["detect", "--json", "--variant", "cu128"], {"LAYERENV_VARIANT": "cu126"}, tmp_path)
    assert code == 0 and json.loads(out)["variant"] == "cu128"
    code, out, _ = invoke(["detect", "--json"], {"LAYERENV_VARIANT": "cu126"}, tmp_path)
    assert code == 0 and json.loads(out)["variant"] == "cu126"
    code, out, _ = invoke(["detect", "--json"], {"PYTORCH_FORCE_NIGHTLY": "true"}, tmp_path)
    assert code == 0 and json.loads(out)["channel"] == "nightly"
    code, out, _ = invoke(["detect", "--json"], {"CUDA_VISIBLE_DEVICES": ""}, tmp_path)
    assert code == 0 and json.loads(out)["variant"] == "cpu"


def test_strict_conflict_exits_1_with_the_gpu_named(tmp_path: Path) -> None:
    env = {"LAYERENV_SYSROOT": str(FIXTURE_MACHINES / "gtx1080-580")}
    code, out, err = invoke(["detect", "--variant", "cu130"], env, tmp_path)
    assert code == 0 and "not served" in out and "GTX 1080" in err
    code, _, err = invoke(["detect", "--variant", "cu130", "--strict"], env, tmp_path)
    assert code == 1 and "GTX 1080" in err and "sm_6x" in err


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["detect", "--variant", "cu999"], {}, "cu999"),
        (["detect", "--channel", "beta"], {}, "beta"),
        (["detect"], {"LAYERENV_CHANNEL": "beta"}, "LAYERENV_CHANNEL"),
        (["detect"], {"LAYERENV_STRICT": "maybe"}, "LAYERENV_STRICT"),
        (["detect"], {"PYTORCH_FORCE_NIGHTLY": "perhaps"}, "PYTORCH_FORCE_NIGHTLY"),
        (["detect", "--torch", "two"], {}, "two"),
        (["detect"], {"LAYERENV_CONFIG": "/nonexistent.toml"}, "LAYERENV_CONFIG"),
        (["detect", "--bogus"], {}, "--bogus"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], env: dict[str, str], expected: str) -> None:
    code, _out, err = invoke(args, env, tmp_path)
    assert code == 2, err
    assert expected in err and "Traceback" not in err


def test_version_and_help_name_every_command(tmp_path: Path) -> None:
    code, out, _ = invoke(["--version"], {}, tmp_path)
    assert code == 0 and out.startswith("layerenv, version ")
    code, out, _ = invoke(["--help"], {}, tmp_path)
    assert code == 0
    for name in ("detect", "base", "project", "run", "shell", "status"):
        assert f"  {name} " in out


@pytest.mark.parametrize(("env", "coloured"), [({}, True), ({"NO_COLOR": "1"}, False)])
def test_no_color_turns_off_colour_on_a_terminal(env: dict[str, str], coloured: bool) -> None:
    from layerenv.cli.ui import Console

    console = Console(tty=True, env=env)
    runner = CliRunner()
    with runner.isolation(color=True) as (_, err, _unused):
        console.warn("careful")
        console.step("working")
    text = err.getvalue().decode()
    assert ("\x1b[" in text) is coloured
    assert "careful" in text and "] working" in text
