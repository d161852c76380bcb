"""Security properties: names cannot escape the store, files run at interpreter start hold only
escaped fixed paths, a store built by root is not writable by others (whatever the umask), a base
others can write is refused, and index credentials never reach a log, a manifest or the terminal.

``verify`` catching a modified base file is covered by tests/test_lifecycle.py.
"""

from __future__ import annotations

import ast
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from layerenv.cli.main import cli
from layerenv.errors import BadInput
from layerenv.store.home import Store
from layerenv.store.identity import check_name
from tests.support.cli import FIXTURE_MACHINES, REPO, layerenv_env, run_layerenv

WEIRD = "we'ird $(dir) ;x `id` \"q\""
WRITE_BITS = stat.S_IWGRP | stat.S_IWOTH


def everything(root: Path) -> set[str]:
    return {str(path) for path in root.rglob("*")}


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("layerenv: error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture
def env_in(installer_env: dict[str, str], variant_indexes):  # type: ignore[no-untyped-def]
    def make(home: Path, **extra: str) -> dict[str, str]:
        settings = {"LAYERENV_INDEX_URL": variant_indexes.url_template, "LAYERENV_INSTALLER": "uv"}
        settings.update(extra)
        base_env = {**installer_env, "PIP_INDEX_URL": variant_indexes.pypi_url}
        return layerenv_env(home, base_env=base_env, machine="no-gpu", extra=settings)

    return make


# Names that reach the filesystem ----------------------------------------------------------------


@settings(max_examples=200, derandomize=True, database=None, deadline=None)
@given(name=st.text(max_size=30))
def test_accepted_names_stay_inside_their_directory(name: str) -> None:
    store = Store(Path("/store"))
    try:
        accepted = check_name(name, "base id")
    except BadInput as error:
        assert "\n" not in error.message
        return
    assert "/" not in accepted and ".." not in accepted and accepted not in (".", "")
    assert os.path.normpath(store.base_dir(accepted)).startswith("/store/bases/")
    assert Path(os.path.normpath(store.base_dir(accepted))).parent == store.bases


@pytest.mark.parametrize("name", ["../x", "../../etc", "/etc", "a/b", "..", ".", "", "x\n", "a b", "-rf", "~root"])
def test_traversal_names_are_refused(tmp_path: Path, name: str) -> None:
    store = Store(tmp_path / "home")
    with pytest.raises(BadInput):
        store.base_dir(name)
    with pytest.raises(BadInput), store.lock(name, purpose="test"):
        pass
    assert not any(path.name.endswith(".lock") for path in tmp_path.rglob("*") if path.parent != store.locks)


@pytest.mark.parametrize(
    "args",
    [
        ["verify", "../x"],
        ["verify", "../../etc"],
        ["rebase", "--base", "../../etc"],
        ["rebase", "--dry-run", "--base", "../x"],
        ["detect", "--variant", "../cu128"],
        ["base", "--variant", "../cu128"],
        ["project", "PROJ", "--variant", "../cu128"],
        ["gc", "--dry-run"],
    ],
)
def test_cli_names_never_escape(tmp_path: Path, args: list[str]) -> None:
    home = tmp_path / "inner" / "home"
    project = tmp_path / "inner" / "proj"
    project.mkdir(parents=True)
    (tmp_path / "inner" / "x").mkdir()
    Store(home).ensure_writable()
    before = everything(tmp_path)
    env = {
        "LAYERENV_HOME": str(home),
        "LAYERENV_USER_CONFIG": str(tmp_path / "none.toml"),
        "LAYERENV_SYSROOT": str(FIXTURE_MACHINES / "no-gpu"),
    }
    if args[0] == "project" and "--variant" in args:
        args = ["project", str(project)]
        env["LAYERENV_VARIANT"] = "../cu128"
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    if args != ["gc", "--dry-run"]:
        assert result.exit_code == 2, result.output
        one_error_line(result.stderr)
    assert everything(tmp_path) == before


def test_project_path_with_dotdot_is_resolved(tmp_path: Path) -> None:
    from layerenv.project.create import check_project_dir

    (tmp_path / "a" / "b").mkdir(parents=True)
    assert check_project_dir(tmp_path / "a" / "b" / ".." / "b" / "..") == (tmp_path / "a").resolve()


# Newlines cannot reach a .pth line -------------------------------------------------------------


def test_newline_in_home_or_project_is_refused(tmp_path: Path) -> None:
    odd = tmp_path / "new\nline"
    odd.mkdir()
    link = tmp_path / "plain-link"
    link.symlink_to(odd)
    before = everything(tmp_path)
    env = {"LAYERENV_USER_CONFIG": str(tmp_path / "none.toml"), "LAYERENV_SYSROOT": str(FIXTURE_MACHINES / "no-gpu")}
    for args, extra in (
        (["base"], {"LAYERENV_HOME": str(odd / "home")}),
        (["status"], {"LAYERENV_HOME": str(odd / "home")}),
        (["project", str(odd)], {"LAYERENV_HOME": str(tmp_path / "home")}),
        (["project", str(link)], {"LAYERENV_HOME": str(tmp_path / "home")}),
    ):
        result = CliRunner().invoke(cli, args, env={**env, **extra})
        assert result.exit_code == 2, (args, result.output)
        assert "newline" in one_error_line(result.stderr)
    assert everything(tmp_path) == before


# Builds: weird paths, umask, world-writable bases, credentials --------------------------------


def test_weird_paths_and_permissive_umask(tmp_path: Path, env_in) -> None:  # type: ignore[no-untyped-def]
    """A base and a project under a path full of shell metacharacters, built with umask 000."""
    root = tmp_path / WEIRD
    home, project = root / "home", root / f"pro ject {WEIRD}"
    project.mkdir(parents=True)
    env = env_in(home)
    command = [sys.executable, "-m", "layerenv", "project", str(project)]
    result = subprocess.run(
        ["sh", "-c", 'umask 000; exec "$@"', "sh", *command],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr

    venv = project / ".venv"
    site = next((venv / "lib").glob("python*/site-packages"))
    pth = (site / "_layerenv.pth").read_text(encoding="utf-8")
    lines = pth.splitlines()
    base_id = json.loads((venv / "layerenv.json").read_text())["base_id"]
    base_site = next((home / "bases" / base_id / "lib").glob("python*/site-packages"))
    assert lines[0] == str(base_site) and lines[1].startswith("import _layerenv_boot;"), pth
    assert pth.endswith("\n") and pth.count("\n") == 2
    calls = [node for node in ast.walk(ast.parse(lines[1])) if isinstance(node, ast.Call)]
    layer = [call for call in calls if isinstance(call.func, ast.Attribute) and call.func.attr == "layer"]
    assert len(layer) == 1 and isinstance(layer[0].args[0], ast.Constant) and layer[0].args[0].value == str(base_site)
    boot_text = (site / "_layerenv_boot.py").read_text(encoding="utf-8")
    compile(boot_text, "_layerenv_boot.py", "exec")
    assert str(base_site) not in boot_text  # the .pth names the base
    torch_file = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import torch; print(torch.__file__)"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    ).stdout.strip()
    assert torch_file.startswith(str(base_site))

    # umask 000 at build time, and still nothing in the store is writable by group or others
    writable = [
        str(path)
        for path in [home, *home.rglob("*")]
        if not path.is_symlink() and path.lstat().st_mode & WRITE_BITS
    ]
    assert not writable, writable[:10]
    for directory in (home / "bases", home / "locks", home / "logs", home / "registry"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o755


def test_a_base_others_can_write_is_refused(tmp_path: Path, env_in) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    env = env_in(home)
    built = run_layerenv(["base", "--json"], env, tmp_path)
    assert built.returncode == 0, built.stderr
    base_id = json.loads(built.stdout)["base_id"]
    base = home / "bases" / base_id
    site = next((base / "lib").glob("python*/site-packages"))
    target = site / "torch" / "__init__.py"

    from layerenv.base.current import refuse_writable_by_others
    from layerenv.base.manifest import read_manifest

    manifest = read_manifest(base / "layerenv-manifest.json")
    started = time.perf_counter()
    for _ in range(20):
        refuse_writable_by_others(manifest)
    assert (time.perf_counter() - started) / 20 < 0.005

    target.chmod(target.stat().st_mode | stat.S_IWOTH)
    try:
        project = tmp_path / "proj"
        project.mkdir()
        for args in (["base"], ["project", str(project)]):
            result = run_layerenv(args, env, tmp_path)
            assert result.returncode == 1, (args, result.stdout, result.stderr)
            line = one_error_line(result.stderr)
            assert str(target) in line and "chmod" in line and "o-w" in line
        assert not (project / ".venv").exists()
    finally:
        target.chmod(target.stat().st_mode & ~stat.S_IWOTH)
    (site / "torch").chmod(0o777)
    try:
        result = run_layerenv(["base"], env, tmp_path)
        assert result.returncode == 1 and str(site / "torch") in result.stderr
    finally:
        (site / "torch").chmod(0o755)
    again = run_layerenv(["base", "--json"], env, tmp_path)
    assert again.returncode == 0 and json.loads(again.stdout)["status"] == "reused", again.stderr


def test_the_check_reads_every_package_folder_and_the_torch_family_a_level_deeper(  # type: ignore[no-untyped-def]
    tmp_path: Path, env_in
) -> None:
    """Every package folder of a base is read (a world-writable install or a `chmod -R` makes them writable,
    and who can write one can put any module in it); the torch family's subfolders and top-level modules
    too; another package's are not (what keeps an adopted venv of ~200 distributions at hundreds of paths)."""
    from dataclasses import replace

    from layerenv.base.current import refuse_writable_by_others, trust_checked_paths
    from layerenv.base.manifest import PackageRecord, read_manifest
    from layerenv.errors import OperationFailed

    home = tmp_path / "home"
    built = run_layerenv(["base", "--json"], env_in(home), tmp_path)
    assert built.returncode == 0, built.stderr
    base = home / "bases" / json.loads(built.stdout)["base_id"]
    site = next((base / "lib").glob("python*/site-packages"))
    (site / "numpy" / "linalg").mkdir(parents=True)
    (site / "numpy" / "__init__.py").write_text("", encoding="utf-8")
    manifest = read_manifest(base / "layerenv-manifest.json")
    adopted_like = replace(manifest, packages={**manifest.packages,
                                               "numpy": PackageRecord("numpy", "2.3.0", "0" * 64, "pip")})

    paths = {path for path, _ in trust_checked_paths(adopted_like)}

    torch_inside = {str(path) for path in (site / "torch").iterdir()
                    if path.suffix == ".py" or (path.is_dir() and not path.is_symlink())}
    assert torch_inside and torch_inside <= paths, "the torch family: subfolders and top-level modules"
    assert str(site / "numpy") in paths
    assert not {str(site / "numpy" / "linalg"), str(site / "numpy" / "__init__.py")} & paths
    (site / "numpy").chmod(0o777)
    try:
        with pytest.raises(OperationFailed, match="numpy is writable by other users"):
            refuse_writable_by_others(adopted_like)
    finally:
        (site / "numpy").chmod(0o755)


def _no_secret_anywhere(home: Path, outputs: list[str]) -> None:
    for text in outputs:
        assert "s3cret" not in text, text
    leaks = [str(path) for path in home.rglob("*") if path.is_file() and b"s3cret" in path.read_bytes()]
    assert not leaks, leaks


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_index_credentials_never_leak(tmp_path: Path, env_in, served_indexes, installer: str) -> None:  # type: ignore[no-untyped-def]
    """Credentials in the extra index (handed to the installer, written to logs via redact) and in
    the variant index: never on the terminal, in a log, a manifest or any other store file."""
    home = tmp_path / "home"
    secret = served_indexes.url_template.replace("http://", "http://user:s3cret@")
    env = env_in(
        home,
        LAYERENV_INDEX_URL=served_indexes.url_template,
        LAYERENV_EXTRA_INDEX_URL=secret.format(variant="pypi"),
        LAYERENV_INSTALLER=installer,
    )
    built = run_layerenv(["-v", "base", "--json"], env, tmp_path)
    assert built.returncode == 0, built.stderr
    outputs = [built.stdout + built.stderr]
    for args in (["base"], ["status", "--json"], ["config"], ["doctor"], ["verify"]):
        result = run_layerenv(args, env, tmp_path)
        assert result.returncode in (0, 1), (args, result.stderr)
        outputs.append(result.stdout + result.stderr)
    assert "***@127.0.0.1" in next(home.glob("bases/*/layerenv-manifest.json")).read_text()
    assert any("***@127.0.0.1" in path.read_text() for path in home.glob("logs/*.log"))
    _no_secret_anywhere(home, outputs)

    # the variant index itself with credentials (a rebuild; whether it succeeds or is reported
    # unreachable, the secret stays out of every output and file)
    env["LAYERENV_INDEX_URL"] = secret
    outputs = []
    for args in (["-v", "base", "--rebuild", "--json"], ["config"], ["status"]):
        result = run_layerenv(args, env, tmp_path)
        assert result.returncode in (0, 1), (args, result.stderr)
        outputs.append(result.stdout + result.stderr)
    _no_secret_anywhere(home, outputs)


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_index_credentials_never_reach_a_project_install_log(tmp_path: Path, env_in, served_indexes, installer: str) -> None:  # type: ignore[no-untyped-def]
    """The project's installer runs with the user's credentialed index and a requirement whose URL
    carries a token: the project's install log names them only as ``***@``."""
    home = tmp_path / "home"
    secret = served_indexes.url_template.replace("http://", "http://user:s3cret@")
    wheel = next((served_indexes.root / "pypi" / "files").glob("plain_lib-1.0-*.whl"))
    direct = secret.format(variant="pypi").removesuffix("/simple") + f"/files/{wheel.name}"
    env = env_in(home, LAYERENV_INDEX_URL=served_indexes.url_template, LAYERENV_INSTALLER=installer)
    env.update(PIP_INDEX_URL=secret.format(variant="pypi"), UV_INDEX_URL=secret.format(variant="pypi"))
    project = tmp_path / "repo"
    project.mkdir()
    (project / "requirements.txt").write_text(f"needs-torch\nplain-lib @ {direct}\n")
    made = run_layerenv(["-v", "project", str(project)], env, tmp_path)
    assert made.returncode == 0, made.stderr
    project_logs = list(home.glob("logs/project-repo-*.log"))
    assert project_logs and any("plain-lib @ http://***@127.0.0.1" in path.read_text() for path in project_logs)
    _no_secret_anywhere(home, [made.stdout + made.stderr])


def _literal_modes() -> list[tuple[str, int, int]]:
    """Every integer literal that layerenv's code passes as a file mode (``mode=``, ``chmod``,
    ``os.open``'s third argument, ``mkdir``)."""
    found = []
    for path in sorted((REPO / "layerenv").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            candidates = [kw.value for kw in node.keywords if kw.arg == "mode"]
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in ("chmod", "fchmod", "mkdir", "makedirs") and node.args:
                candidates.append(node.args[-1])
            if name == "open" and len(node.args) >= 3:
                candidates.append(node.args[2])
            for value in candidates:
                if isinstance(value, ast.Constant) and isinstance(value.value, int):
                    found.append((str(path.relative_to(REPO)), node.lineno, value.value))
    return found


def test_no_file_mode_layerenv_writes_is_group_or_other_writable() -> None:
    """Every literal mode in the code, and write_text's default, keeps group/other write bits off."""
    import inspect

    from layerenv.store.atomic import write_text

    assert inspect.signature(write_text).parameters["mode"].default == 0o644
    modes = _literal_modes()
    assert len(modes) >= 3  # the scan sees the store's chmod(0o755) calls, so it is looking
    assert [(path, line, oct(mode)) for path, line, mode in modes if mode & 0o022] == []


def test_a_new_store_is_not_group_or_other_writable_under_a_permissive_umask(tmp_path: Path) -> None:
    from layerenv.store.home import Store

    previous = os.umask(0)
    try:
        store = Store.open(str(tmp_path / "store"), {})
        store.ensure_writable()
        (store.logs / "probe.log").write_text("x")
    finally:
        os.umask(previous)
    for path in [store.home, *store.home.rglob("*")]:
        assert path.stat().st_mode & 0o022 == 0, path


# A project's config never chooses a shared base's torch ----------------------------------------


def test_a_hostile_projects_index_never_decides_the_torch_other_projects_get(
    tmp_path: Path, env_in, fake_wheel_families, variant_indexes  # type: ignore[no-untyped-def]
) -> None:
    """The hostile project comes first, on an empty store: without a base key of its own, the base
    it built from its own index would be the one every later project reuses. (~3 s: two bases.)"""
    from tests.support.index import file_url, write_simple_index
    from tests.support.wheels import build_fake_torch

    trojan = build_fake_torch(tmp_path / "wheels", "2.9.1+cpu", cuda=None, payload_bytes=16)
    companions = [wheel for wheel in fake_wheel_families["cpu"] if not wheel.name.startswith("torch-")]
    hostile_index = write_simple_index(tmp_path / "hostile" / "cpu", [trojan, *companions])
    hostile = tmp_path / "hostile-repo"
    hostile.mkdir()
    (hostile / "layerenv.toml").write_text(
        f'[index]\nurl = "{file_url(hostile_index).replace("/cpu/simple", "/{variant}/simple")}"\n')
    user_config = tmp_path / "user.toml"  # the user's own choice, weaker than a project's file
    user_config.write_text(f'[index]\nurl = "{variant_indexes.url_template}"\n')
    env = env_in(tmp_path / "home", LAYERENV_USER_CONFIG=str(user_config))
    del env["LAYERENV_INDEX_URL"]
    victim = tmp_path / "victim"
    victim.mkdir()

    for project in (hostile, victim):
        result = run_layerenv(["project", str(project)], env, project, timeout=120)
        assert result.returncode == 0, result.stderr
        nodes = list((tmp_path / "home" / "nodes").rglob("*.*"))  # what per-node projects load on this node
        assert not any("-src" in record.read_text() for record in nodes)

    def torch_of(project: Path) -> Path:
        code = "import torch; print(torch.__file__)"
        out = subprocess.run([str(project / ".venv" / "bin" / "python"), "-c", code], capture_output=True,
                             text=True, check=True).stdout
        return Path(out.strip()).parent

    hostile_torch, victim_torch = torch_of(hostile), torch_of(victim)
    assert (hostile_torch / "lib" / "libfake_payload.so").is_file()  # the hostile project got what it asked for
    assert not (victim_torch / "lib" / "libfake_payload.so").exists()
    hostile_base, victim_base = hostile_torch.parents[3].name, victim_torch.parents[3].name
    assert victim_base == "cp{}{}-linux_x86_64-torch2.9.1-cpu".format(*sys.version_info[:2])
    assert hostile_base.startswith(victim_base + "-src") and len(hostile_base) == len(victim_base) + 16
    status = json.loads(run_layerenv(["status", "--json"], env, victim).stdout)
    assert [base["id"] for base in status["bases"] if base["current"]] == [victim_base]

    rebase = run_layerenv(["rebase", "--dry-run"], env, hostile)
    assert rebase.returncode == 2
    assert one_error_line(rebase.stderr).startswith(
        f"layerenv: error: {hostile / 'layerenv.toml'} [index] url chooses where torch comes from, but rebase moves "
        "every registered project")


# Error messages never print a file's content ---------------------------------------------------

SECRET = "hunter2-s3cr3t-value"


def _refusal(project: Path, files: tuple[str, ...] = (), env: dict[str, str] | None = None) -> str:
    from layerenv.project.requirements import read_dependencies

    with pytest.raises(BadInput) as caught:
        read_dependencies(project, files, (), (), from_pyproject=False, env=env or {})
    message = caught.value.message
    assert SECRET not in message and "\n" not in message, message
    return message


def test_a_requirements_file_linked_or_pointing_out_of_the_project_is_refused_unread(tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "credentials"
    secret.parent.mkdir()
    secret.write_text(f"TOKEN={SECRET}\n")
    project = tmp_path / "project"
    project.mkdir()
    (project / "requirements.txt").symlink_to(secret)
    assert _refusal(project) == (f"requirements file 'requirements.txt' must be a file inside the project {project}, "
                                 "not an absolute path nor a path or a link out of it")
    (project / "requirements.txt").unlink()
    for name in (str(secret), "../outside/credentials", "/proc/self/environ"):
        assert _refusal(project, (name,)).startswith(f"[project] requirements: {name!r} must be a file inside")
    (project / "requirements.txt").write_text("plain-lib\n-r ../outside/credentials\n")
    assert _refusal(project).startswith(
        f"requirements.txt:2: it includes a file outside the project {project} (or a link out of it)")
    (project / "requirements.txt").write_text("-r /proc/self/environ\n")
    assert _refusal(project).startswith("requirements.txt:1: it includes a file outside the project")


def test_requirement_errors_name_the_file_and_line_never_the_text(tmp_path: Path) -> None:
    """pip expands ${VARIABLE} in requirements files: the expanded line may hold a secret."""
    env = {"TOKEN": SECRET}
    cases = {
        "plain-lib\n${TOKEN}!!\n": "requirements.txt:2: not a valid requirement (",
        "-r ${TOKEN}.txt\n": "requirements.txt:1: the requirements file it includes does not exist",
        "-e ./${TOKEN}\n": "requirements.txt:1: -e names a path that is not a directory",
        "./${TOKEN}.whl\n": "requirements.txt:1: the local path it names does not exist",
        "--${TOKEN}\n": "requirements.txt:1: an option pip does not know is not supported",
        "plain-lib --${TOKEN}\n": "requirements.txt:1: an option after a requirement is not supported",
        "https://${TOKEN} x\n": "requirements.txt:1: not a valid URL requirement",
    }
    for text, expected in cases.items():
        (tmp_path / "requirements.txt").write_text(text)
        assert _refusal(tmp_path, env=env).startswith(expected), text


def test_a_config_file_that_is_no_config_is_refused_without_its_values(tmp_path: Path) -> None:
    from layerenv.config import ConfigError, load_settings

    (tmp_path / "layerenv.toml").write_text(f'token = "{SECRET}"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(project_dir=tmp_path, env={"LAYERENV_USER_CONFIG": "/nonexistent"})
    assert caught.value.message == (f"{tmp_path / 'layerenv.toml'}: 'token' must be a table such as [token], "
                                    "not a string")


def test_a_project_file_that_leaves_the_torch_sources_empty_keeps_the_shared_base(tmp_path: Path) -> None:
    """`[index] url = ""` (as layerenv.toml ships it) chooses nothing: only a value gives a base of its own."""
    from layerenv.base.request import sources_chosen_by
    from layerenv.config import load_settings

    project = tmp_path / "app"
    project.mkdir()
    (project / "layerenv.toml").write_text('[index]\nurl = ""\nextra_urls = []\nfind_links = []\n', encoding="utf-8")
    assert sources_chosen_by(load_settings(project_dir=project, env={})) == ""
    (project / "layerenv.toml").write_text('[index]\nfind_links = ["/srv/wheels"]\n', encoding="utf-8")
    assert sources_chosen_by(load_settings(project_dir=project, env={})).endswith("[index] find_links")
