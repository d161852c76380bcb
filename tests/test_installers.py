"""The one door to pip and uv: one list of names, every run logged without credentials, and what
each installer reports about where it took each distribution from (real uv, local indexes)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from layerenv.cli.main import cli
from layerenv.config import INSTALLER_NAMES, SPECS
from layerenv.installers import INSTALLERS, Log, Sources, UvInstaller, find_uv, get_installer
from layerenv.installers.run import run
from layerenv.venv.create import create_virtualenv
from tests.support.index import file_url, write_find_links_dir, write_simple_index
from tests.support.wheels import build_fake_torch, build_plain_package


def test_one_list_of_installers_feeds_the_registry_the_setting_and_the_cli() -> None:
    assert tuple(INSTALLERS) == INSTALLER_NAMES
    assert SPECS["base.installer"].choices == INSTALLER_NAMES
    for name in ("base", "project"):
        command = cli.get_command(click.Context(cli), name)
        assert command is not None
        option = next(param for param in command.params if param.name == "installer")
        assert isinstance(option.type, click.Choice) and tuple(option.type.choices) == INSTALLER_NAMES
    concrete = [name for name in INSTALLER_NAMES if name != "auto"]
    assert [get_installer(name).name for name in concrete] == concrete
    assert get_installer("auto").name == "uv"  # uv is installed here: the default resolves to it


def test_the_runner_redacts_credentials_in_argv_and_output(tmp_path: Path) -> None:
    log = Log(tmp_path / "logs" / "run.log")
    code = "import sys; print('from http://user:s3cret@h/simple'); print('https://t0ken@h/x.whl', file=sys.stderr)"
    ran = run([sys.executable, "-c", code, "--index-url=http://user:s3cret@h/simple"], log)
    written = log.path.read_text() if log.path else ""
    assert ran.returncode == 0
    assert "s3cret" not in ran.output + written and "t0ken" not in ran.output + written
    assert "--index-url=http://***@h/simple" in written
    assert "from http://***@h/simple" in ran.stdout and "https://***@h/x.whl" in ran.stderr


def test_uv_reports_where_each_installed_distribution_came_from(tmp_path: Path, installer_env: dict[str, str]) -> None:
    index = write_simple_index(
        tmp_path / "index", [build_fake_torch(tmp_path / "w", "2.9.1+cpu", cuda=None),
                             build_plain_package(tmp_path / "w", "plain-lib", "1.0")]
    )
    links = write_find_links_dir(tmp_path / "links", [build_plain_package(tmp_path / "w", "other-lib", "2.0")])
    venv = tmp_path / "venv"
    create_virtualenv(venv, Path(sys.executable), prompt="t", seed_pip=False)
    uv_binary = find_uv()
    assert uv_binary is not None
    uv = UvInstaller(uv_binary, installer_env)
    sources = Sources(file_url(index), find_links=(str(links),))

    installed = uv.install(venv / "bin" / "python", ["torch==2.9.1+cpu", "plain-lib", "other-lib"], sources, Log(None))

    assert {(item.name, item.version, item.url) for item in installed} == {
        ("torch", "2.9.1+cpu", file_url(index)),
        ("plain-lib", "1.0", file_url(index)),
        ("other-lib", "2.0", file_url(links)),
    }


def test_uv_asks_where_from_only_for_the_distributions_the_caller_needs(
    tmp_path: Path, installer_env: dict[str, str]
) -> None:
    """A base build needs the source of an unlabelled pinned wheel only: the others come back without
    one, and uv is not run again to find it."""
    index = write_simple_index(
        tmp_path / "index", [build_fake_torch(tmp_path / "w", "2.9.1+cpu", cuda=None),
                             build_plain_package(tmp_path / "w", "plain-lib", "1.0")]
    )
    venv = tmp_path / "venv"
    create_virtualenv(venv, Path(sys.executable), prompt="t", seed_pip=False)
    uv_binary = find_uv()
    assert uv_binary is not None
    log = Log(tmp_path / "install.log")

    installed = UvInstaller(uv_binary, installer_env).install(
        venv / "bin" / "python", ["torch==2.9.1+cpu", "plain-lib"], Sources(file_url(index)), log,
        sources_for=lambda name, version: name == "plain-lib",
    )

    assert {(item.name, item.version, item.url) for item in installed} == {
        ("torch", "2.9.1+cpu", None),
        ("plain-lib", "1.0", file_url(index)),
    }
    written = log.path.read_text() if log.path else ""
    assert written.count(" pip compile ") == 1, "one run asks where from, for plain-lib alone"
    answered = written.split(" pip compile ", 1)[1].splitlines()
    assert "plain-lib==1.0" in answered and not any(line.startswith("torch") for line in answered)
