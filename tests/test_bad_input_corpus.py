"""A corpus of malformed inputs: each is refused with one ``layerenv: error:`` line and exit 2
(or, for machine files and ``nvidia-smi`` output, detection falls back and still answers), never a
traceback, and nothing on disk changes.

Everything runs in-process through click's ``CliRunner`` (about 5 ms an input). The corpus size is
fixed: explicit lists plus Hypothesis examples drawn with ``derandomize=True`` (the same inputs on
every run, so no flaky failures); ``test_corpus_size`` adds them up (see
``benchmarks/reliability-input.md``).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layerenv.choice.table import load_matrix
from layerenv.cli.main import cli
from layerenv.config import SETTINGS, SPECS
from tests.support.cli import FIXTURE_MACHINES, tree_digest
from tests.support.fake_smi import install_fake_smi

HYPOTHESIS = settings(
    max_examples=25,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
EXAMPLES = 25  # per Hypothesis test below
PLAIN_PATH = "/usr/bin:/bin"  # no nvidia-smi of the host machine


# Helpers -------------------------------------------------------------------------------------


@contextmanager
def _chdir(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def invoke(args: list[str], home: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Result:
    full = {
        "LAYERENV_HOME": str(home),
        "LAYERENV_USER_CONFIG": str(home.parent / "no-user-config.toml"),
        "LAYERENV_SYSROOT": str(FIXTURE_MACHINES / "h100-580"),
        "PATH": PLAIN_PATH,
        **(env or {}),
    }
    with _chdir(cwd or home.parent):
        return CliRunner().invoke(cli, args, env=full)


def no_traceback(result: Result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"traceback: {result.exception!r}\n{result.output}"
    )
    assert "Traceback" not in result.output


def assert_clean_error(result: Result, code: int = 2) -> str:
    """One ``layerenv: error:`` line on stderr, the exit code, no traceback; returns the line."""
    no_traceback(result)
    lines = result.stderr.splitlines()
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("layerenv: error: "), result.stderr
    return lines[0]


def assert_usage_error(result: Result) -> None:
    """click's refusal of an option or value (``--channel x``), turned into the same one line, exit 2."""
    line = assert_clean_error(result)
    assert "--help" in line, line


@pytest.fixture
def world(tmp_path: Path) -> Path:
    """A tmp dir with ``home`` (an existing, empty store) and ``proj`` (an empty project)."""
    home = tmp_path / "home"
    for name in ("bases", "staging", "graveyard", "registry", "locks", "logs"):
        (home / name).mkdir(parents=True)
    (tmp_path / "proj").mkdir()
    return tmp_path


class Unchanged:
    """Digest of the whole tmp dir before an input; ``check()`` after it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.before = tree_digest(root)

    def check(self) -> None:
        assert tree_digest(self.root) == self.before, "bad input changed something on disk"


_counter = iter(range(10**9))


def fresh(world: Path, name: str) -> Path:
    path = world / f"{name}-{next(_counter)}"
    path.mkdir()
    return path


# Config files ----------------------------------------------------------------------------------

BAD_CONFIG_TEXTS: list[str] = [
    "[torch\nvariant=",
    "[torch]\nvariant = cu128\n",
    "[torch]\nvariant = 'cu128'\nvariant = 'cu126'\n",
    "[torch]\n[torch]\n",
    "= 1\n",
    "[torch]\nstrict = tru\n",
    "[torch]\nstrict = 'yes'\n",
    "[torch]\nstrict = 1\n",
    "[torch]\nvariant = 128\n",
    "[torch]\nvariant = ['cu128']\n",
    "[torch]\nvariant = 'cu999'\n",
    "[torch]\nvariant = '../cu128'\n",
    "[torch]\nvariant = ''\n",
    "[torch]\nchannel = 'beta'\n",
    "[torch]\nchannel = 1.5\n",
    "[torch]\nversion = 'latest!'\n",
    "[torch]\nversion = '>>2'\n",
    "[torch]\nversion = 2.9\n",
    "[torch]\nflavour = 'x'\n",
    "[base]\npackages = 3\n",
    "[base]\npackages = [1, 2]\n",
    "[base]\npackages = [['torch']]\n",
    "[base]\ninstaller = 'conda'\n",
    "[base]\npython = 3.12\n",
    "[index]\nurl = 'ftp://mirror/{variant}'\n",
    "[index]\nurl = 'https://mirror/{flavour}'\n",
    "[index]\nurl = 'mirror.example/{variant}'\n",
    '[index]\nurl = "https://mirror/\\n{variant}"\n',
    "[index]\nextra_urls = ['gopher://x']\n",
    "[index]\nextra_urls = 'ftp://x'\n",
    "[index]\nfind_links = ['ftp://x']\n",
    "[index]\nfind_links = [7]\n",
    "[store]\nhome = 7\n",
    "[project]\nrequirements = {a = 1}\n",
    "[project]\ndependencies = [true]\n",
    "[project]\nextras = 1979-05-27\n",
    "torch = 3\n",
    "torch = 'cu128'\n",
    "[nonsense]\nkey = 1\n",
    "[torch.variant]\nname = 'cu128'\n",
    "[[torch]]\nvariant = 'cu128'\n",
    "[torch]\nvariant = '" + "c" * 100_000 + "'\n",
    "[torch]\n" + "".join(f"k{i} = {i}\n" for i in range(2000)),
    "[torch]\nvariant = \"\\ud800\"\n",
    "\x00",
    "[torch]\nvariant = 'cu128' # " + "\x7f" + "\n",
]
BAD_CONFIG_BYTES: list[bytes] = [
    b'[torch]\nvariant = "\xff\xfe"\n',
    b"\xff\xfe[\x00t\x00o\x00r\x00c\x00h\x00]\x00",  # UTF-16
    b"\x80\x81\x82",
    b"[torch]\nchannel = 'stable\xc3\x28'\n",
]


def _as_pyproject(text: str) -> str:
    """The same table under ``[tool.layerenv]`` of a pyproject.toml."""
    out = []
    for line in text.splitlines(keepends=True):
        if line.startswith("[[") and line.rstrip().endswith("]]"):
            out.append(f"[[tool.layerenv.{line.strip()[2:-2]}]]\n")
        elif line.startswith("[") and line.rstrip().endswith("]") and not line.startswith("[torch\n"):
            out.append(f"[tool.layerenv.{line.strip()[1:-1]}]\n")
        elif "=" in line and not out and not line.startswith("["):
            out.append("[tool.layerenv]\n" + line)
        else:
            out.append(line)
    return "".join(out) or "[tool.layerenv]\n"


@pytest.mark.parametrize("index", range(len(BAD_CONFIG_TEXTS)))
@pytest.mark.parametrize("where", ["layerenv.toml", "pyproject.toml", "LAYERENV_CONFIG"])
def test_bad_config_text(world: Path, index: int, where: str) -> None:
    text = BAD_CONFIG_TEXTS[index]
    project = fresh(world, "cfg")
    env: dict[str, str] = {}
    if where == "pyproject.toml":
        (project / "pyproject.toml").write_text(_as_pyproject(text), encoding="utf-8", errors="surrogatepass")
    elif where == "LAYERENV_CONFIG":
        (project / "given.toml").write_text(text, encoding="utf-8", errors="surrogatepass")
        env["LAYERENV_CONFIG"] = str(project / "given.toml")
    else:
        (project / "layerenv.toml").write_text(text, encoding="utf-8", errors="surrogatepass")
    unchanged = Unchanged(world)
    line = assert_clean_error(invoke(["detect"], world / "home", env, cwd=project))
    assert str(project) in line
    assert len(line) < 2_000 or "cccc" in line
    unchanged.check()


@pytest.mark.parametrize("data", BAD_CONFIG_BYTES)
@pytest.mark.parametrize("command", [["detect"], ["config"], ["project", "."], ["status"]])
def test_non_utf8_config(world: Path, data: bytes, command: list[str]) -> None:
    project = fresh(world, "bytes")
    (project / "layerenv.toml").write_bytes(data)
    unchanged = Unchanged(world)
    line = assert_clean_error(invoke(command, world / "home", cwd=project))
    assert "layerenv.toml" in line
    unchanged.check()


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # json's \ud800-style surrogate escapes are not TOML
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)
_scalar = st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.booleans())
_not_string = st.one_of(_scalar, st.lists(_scalar, max_size=3), st.dictionaries(st.just("k"), _scalar, max_size=1))
_not_bool = st.one_of(st.integers(), _text, st.lists(st.booleans(), max_size=2))
_not_list = st.one_of(_scalar, st.lists(st.one_of(st.integers(), st.booleans()), min_size=1, max_size=3))


@st.composite
def wrong_setting(draw: st.DrawFn) -> tuple[str, Any]:
    spec = draw(st.sampled_from(SETTINGS))
    if spec.kind == "bool":
        return spec.key, draw(_not_bool)
    if spec.kind == "list":
        return spec.key, draw(_not_list)
    return spec.key, draw(_not_string)


@HYPOTHESIS
@given(setting=wrong_setting(), in_pyproject=st.booleans())
def test_wrong_types_in_config_files(world: Path, setting: tuple[str, Any], in_pyproject: bool) -> None:
    key, value = setting
    section, name = key.split(".")
    project = fresh(world, "types")
    if in_pyproject:
        (project / "pyproject.toml").write_text(f"[tool.layerenv.{section}]\n{name} = {_toml_value(value)}\n")
    else:
        (project / "layerenv.toml").write_text(f"[{section}]\n{name} = {_toml_value(value)}\n")
    unchanged = Unchanged(world)
    line = assert_clean_error(invoke(["config"], world / "home", cwd=project))
    assert key in line
    unchanged.check()


_identifier = st.from_regex(r"[a-z_][a-z0-9_-]{0,12}", fullmatch=True)


@HYPOTHESIS
@given(section=st.one_of(st.sampled_from(["torch", "base", "index", "store", "project"]), _identifier), name=_identifier)
def test_unknown_keys_in_config_files(world: Path, section: str, name: str) -> None:
    if f"{section}.{name}" in SPECS:
        name += "_x"
    project = fresh(world, "keys")
    (project / "layerenv.toml").write_text(f"[{section}]\n{name} = 'v'\n")
    unchanged = Unchanged(world)
    line = assert_clean_error(invoke(["detect"], world / "home", cwd=project))
    assert "unknown key" in line
    unchanged.check()


# Requirements files ----------------------------------------------------------------------------

BAD_REQUIREMENT_LINES: list[str] = [  # pip's options are read as pip reads them: only broken ones are bad
    "-r other.txt",
    "--index-url",
    "-e .",
    "--extra-index-url=",
    "-f",
    "--trusted-host",
    "--use-pep517",
    "-c constraints.txt",
    "numpy===",
    "numpy>=",
    "numpy >= 1 <",
    "==1.0",
    "numpy[",
    "numpy; python_version >>> '3'",
    "numpy @",
    "http://",
    "!!!",
    "numpy (>=1",
    "numpy ~= 1",
    "a b c",
    "numpy;;",
    "\u00e9t\u00e9>=1",
    "numpy\\",
    "[extra]",
    "@ file:///x",
    "numpy==1.0 --hash",
    "x" * 5000 + "==",
]


@pytest.mark.parametrize("line", BAD_REQUIREMENT_LINES)
def test_bad_requirement_line(world: Path, line: str) -> None:
    project = fresh(world, "req")
    (project / "requirements.txt").write_text(f"# deps\nrequests\n{line}\n", encoding="utf-8")
    unchanged = Unchanged(world)
    message = assert_clean_error(invoke(["project", str(project)], world / "home"))
    assert "requirements.txt:3" in message
    unchanged.check()


BAD_PROJECT_FILES: list[tuple[str, bytes]] = [
    ("requirements.txt", b"requests\n\xff\xfenumpy\n"),
    ("requirements-dev.txt", b"\x80"),
    ("pyproject.toml", b"[project]\ndependencies = 'numpy'\n"),
    ("pyproject.toml", b"[project]\ndependencies = [1]\n"),
    ("pyproject.toml", b"[project]\ndependencies = ['numpy>=']\n"),
    ("pyproject.toml", b"project = 1\n"),
    ("pyproject.toml", b"[project\n"),
    ("pyproject.toml", b"[project]\nname = '\xff'\n"),
    ("layerenv.toml", b"[project]\ndependencies = ['!!']\n"),
    ("layerenv.toml", b"[project]\nrequirements = ['missing.txt']\n"),
    ("layerenv.toml", b"[project]\nrequirements = ['../../etc/passwd-nonexistent']\n"),
]


@pytest.mark.parametrize(("name", "data"), BAD_PROJECT_FILES)
def test_bad_project_files(world: Path, name: str, data: bytes) -> None:
    project = fresh(world, "pf")
    (project / name).write_bytes(data)
    unchanged = Unchanged(world)
    assert_clean_error(invoke(["project", str(project)], world / "home"))
    unchanged.check()


@HYPOTHESIS
@given(data=st.binary(min_size=1, max_size=200))
def test_random_bytes_as_requirements(world: Path, data: bytes) -> None:
    project = fresh(world, "rb")
    (project / "requirements.txt").write_bytes(b"\x80" + data)  # never valid UTF-8
    unchanged = Unchanged(world)
    assert "not UTF-8" in assert_clean_error(invoke(["project", str(project)], world / "home"))
    unchanged.check()


# Environment values ----------------------------------------------------------------------------

_env_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=40
)
_VARIANTS = {"auto", *load_matrix().variant_names}
_BOOL_WORDS = {"1", "true", "yes", "on", "0", "false", "no", "off", ""}

BAD_ENV: list[tuple[str, str]] = [
    ("LAYERENV_VARIANT", "../cu128"),
    ("LAYERENV_VARIANT", "cu128 "),
    ("LAYERENV_VARIANT", "CU128"),
    ("LAYERENV_VARIANT", ""),
    ("LAYERENV_VARIANT", "cu128;rm -rf /"),
    ("LAYERENV_VARIANT", "c" * 100_000),
    ("LAYERENV_CHANNEL", "Stable"),
    ("LAYERENV_CHANNEL", "test"),
    ("LAYERENV_CHANNEL", ""),
    ("LAYERENV_STRICT", "maybe"),
    ("LAYERENV_STRICT", "2"),
    ("LAYERENV_TORCH", "latest"),
    ("LAYERENV_TORCH", ">>2.9"),
    ("LAYERENV_TORCH", "2.9.*.*"),
    ("LAYERENV_TORCH", "==2.9; rm"),
    ("LAYERENV_TORCH", "2.x"),
    ("LAYERENV_INDEX_URL", "ftp://mirror/{variant}"),
    ("LAYERENV_INDEX_URL", "mirror/{variant}"),
    ("LAYERENV_INDEX_URL", "https://mirror/{variant}/{arch}"),
    ("LAYERENV_INDEX_URL", "https://u:s3cret@mirror/{x}"),
    ("LAYERENV_INDEX_URL", "https://mirror/\n{variant}"),
    ("LAYERENV_INDEX_URL", "javascript:alert(1)"),
    ("LAYERENV_EXTRA_INDEX_URL", "ftp://x"),
    ("LAYERENV_FIND_LINKS", "ftp://x"),
    ("LAYERENV_FIND_LINKS", "ssh://host/wheels"),
    ("LAYERENV_INSTALLER", "conda"),
    ("LAYERENV_INSTALLER", "PIP"),
    ("PYTORCH_FORCE_NIGHTLY", "sure"),
    ("PYTORCH_FORCE_STABLE", "2"),
    ("PYTORCH_FORCE_NIGHTLY", "ja"),
    ("LAYERENV_CONFIG", "/nonexistent/layerenv.toml"),
    ("LAYERENV_HOME", "/tmp/with\nnewline"),
    ("LAYERENV_LOCK", "nfs"),
    ("LAYERENV_LOCK", "Lease"),
    ("LAYERENV_PER_NODE", "maybe"),
    ("LAYERENV_LOCK_STALE_AFTER", "-5"),
    ("LAYERENV_LOCK_STALE_AFTER", "nan"),
    ("LAYERENV_NODE", "a/b"),
    ("LAYERENV_NODE", ".."),
]


# detect and config never open the store, so a bad store setting is only bad input for base
STORE_ONLY = ("LAYERENV_HOME", "LAYERENV_LOCK_STALE_AFTER", "LAYERENV_NODE")
ENV_CASES = [
    (name, value, command)
    for name, value in BAD_ENV
    for command in (["detect"], ["config"], ["base"])
    if name not in STORE_ONLY or command == ["base"]
]


@pytest.mark.parametrize(("name", "value", "command"), ENV_CASES)
def test_bad_environment_value(world: Path, name: str, value: str, command: list[str]) -> None:
    unchanged = Unchanged(world)
    line = assert_clean_error(invoke(command, world / "home", {name: value}))
    assert name in line or "LAYERENV" in line or "torch pin" in line or "index URL" in line
    assert "s3cret" not in line
    unchanged.check()


@HYPOTHESIS
@given(
    name=st.sampled_from(
        ["LAYERENV_VARIANT", "LAYERENV_CHANNEL", "LAYERENV_STRICT", "PYTORCH_FORCE_NIGHTLY", "PYTORCH_FORCE_STABLE"]
    ),
    value=_env_text,
)
def test_random_environment_values(world: Path, name: str, value: str) -> None:
    lowered = value.strip().lower()
    valid = (
        (name == "LAYERENV_VARIANT" and value in _VARIANTS)
        or (name == "LAYERENV_CHANNEL" and value in ("stable", "nightly"))
        or (name != "LAYERENV_VARIANT" and name != "LAYERENV_CHANNEL" and lowered in _BOOL_WORDS)
    )
    unchanged = Unchanged(world)
    result = invoke(["detect", "--json"], world / "home", {name: value})
    if valid:
        no_traceback(result)
        assert result.exit_code in (0, 1)
    else:
        assert name in assert_clean_error(result)
    unchanged.check()


@HYPOTHESIS
@given(url=_env_text)
def test_random_index_urls(world: Path, url: str) -> None:
    """Anything that is not http(s)/file with only ``{variant}``, and no control character, is refused."""
    unchanged = Unchanged(world)
    result = invoke(["config"], world / "home", {"LAYERENV_INDEX_URL": "ftp://" + url})
    assert "LAYERENV_INDEX_URL" in assert_clean_error(result)
    result = invoke(["config"], world / "home", {"LAYERENV_FIND_LINKS": "gopher://" + url.replace(" ", "")})
    assert "LAYERENV_FIND_LINKS" in assert_clean_error(result)
    unchanged.check()


# Command-line arguments ------------------------------------------------------------------------

BAD_ARGS: list[list[str]] = [
    ["detect", "--variant", "../cu128"],
    ["detect", "--variant", "cu999"],
    ["detect", "--variant", ""],
    ["detect", "--variant", "cu128/../../x"],
    ["detect", "--torch", "latest"],
    ["detect", "--torch", "2.9.*.*"],
    ["detect", "--torch", "=="],
    ["base", "--variant", "../cu128"],
    ["base", "--torch", ">>2"],
    ["base", "--python", "/nonexistent/python3"],
    ["base", "--python", "2.7.99"],
    ["base", "--python", "../../bin/sh"],
    ["base", "--python", "python;id"],
    ["base", "--adopt", "/nonexistent/venv"],
    ["project", "/nonexistent/project"],
    ["project", "PROJ/file.txt"],
    ["project", "PROJ/../nonexistent"],
    ["project", "PROJ", "--extra", "gpu"],
    ["project", "PROJ", "--python", "/nonexistent/python"],
    ["verify", "../x"],
    ["verify", "../../etc"],
    ["verify", "nonexistent-base"],
    ["verify", "/etc/passwd"],
    ["verify", "x" * 300],
    ["rebase", "--base", "../../etc"],
    ["rebase", "--base", "nonexistent"],
    ["rebase", "--dry-run", "--base", "/tmp"],
    ["rebase", "--project", "/nonexistent/project"],
]
USAGE_ERRORS: list[list[str]] = [
    ["detect", "--channel", "beta"],
    ["detect", "--channel", ""],
    ["base", "--installer", "conda"],
    ["detect", "--bogus"],
    ["nonsense-command"],
    ["project", "a", "b"],
    ["verify", "a", "b"],
    ["rebase", "--base"],
]


@pytest.mark.parametrize("args", BAD_ARGS, ids=lambda a: " ".join(a)[:40])
def test_bad_arguments(world: Path, args: list[str]) -> None:
    (world / "proj" / "file.txt").write_text("x")
    args = [arg.replace("PROJ", str(world / "proj")) for arg in args]
    unchanged = Unchanged(world)
    assert_clean_error(invoke(args, world / "home"))
    unchanged.check()
    assert not (world.parent / "etc").exists() and not (world / "x").exists()


@pytest.mark.parametrize("args", USAGE_ERRORS, ids=lambda a: " ".join(a)[:40])
def test_usage_errors(world: Path, args: list[str]) -> None:
    unchanged = Unchanged(world)
    assert_usage_error(invoke(args, world / "home"))
    unchanged.check()


@HYPOTHESIS
@given(name=_env_text.filter(lambda n: n not in _VARIANTS and not n.startswith("-")))
def test_random_variant_and_base_names(world: Path, name: str) -> None:
    unchanged = Unchanged(world)
    assert_clean_error(invoke(["detect", "--variant", name], world / "home"))
    assert_clean_error(invoke(["verify", name], world / "home"))
    unchanged.check()


# Machine files and nvidia-smi: detection falls back, never errors ------------------------------

SYSROOT_FILES: list[tuple[str, str]] = [
    ("h100-580", "sys/module/nvidia/version"),
    ("h100-580", "proc/driver/nvidia/version"),
    ("h100-580", "proc/driver/nvidia/gpus/0000:00:06.0/information"),
    ("amd-gfx1100", "sys/class/kfd/kfd/topology/nodes/1/properties"),
    ("amd-gfx1100", "sys/class/kfd/kfd/topology/nodes/1/name"),
    ("amd-gfx1100", "opt/rocm/.info/version"),
]


@HYPOTHESIS
@given(target=st.sampled_from(SYSROOT_FILES), data=st.binary(max_size=300))
def test_garbage_machine_files_fall_back(world: Path, target: tuple[str, str], data: bytes) -> None:
    machine, relative = target
    root = fresh(world, "sysroot")
    shutil.copytree(FIXTURE_MACHINES / machine, root, dirs_exist_ok=True)
    (root / relative).write_bytes(data)
    result = invoke(["detect", "--json"], world / "home", {"LAYERENV_SYSROOT": str(root)})
    no_traceback(result)
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["variant"]


@HYPOTHESIS
@given(data=st.binary(max_size=300), code=st.sampled_from([0, 0, 1, 6, 9, 255]))
def test_junk_from_nvidia_smi_falls_back(world: Path, data: bytes, code: int) -> None:
    directory = fresh(world, "smi")
    install_fake_smi(directory / "bin", stdout=data, exit_code=code)
    env = {"PATH": f"{directory / 'bin'}:{PLAIN_PATH}", "LAYERENV_SYSROOT": str(FIXTURE_MACHINES / "h100-580")}
    result = invoke(["detect", "--json"], world / "home", env)
    no_traceback(result)
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["gpus"] and document["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"


# Truncated or edited manifests -----------------------------------------------------------------

_H100_MANIFEST: dict[str, Any] = json.loads((FIXTURE_MACHINES.parent / "h100" / "adopt-manifest.json").read_text())
_GOOD_MANIFEST: dict[str, Any] = {  # the H100's facts, about a base that is not there
    **{key: _H100_MANIFEST[key] for key in ("schema", "machine", "decision", "verification")},
    "base_id": "cp311-linux_x86_64-torch2.9.1-cu128",
    "path": "/nonexistent/base",
    "created": 1.0,
    "layerenv_version": "0",
    "python": {"tag": "cp311", "platform": "linux_x86_64", "version": "3.11.7", "implementation": "cpython",
               "executable": "/nonexistent/python"},
    "variant": "cu128",
    "channel": "stable",
    "torch": "2.9.1",
    "requested": ["torch"],
    "packages": {"torch": {"version": "2.9.1+cu128", "record_sha256": "0" * 64, "installer": "pip"}},
}
_GOOD_TEXT = json.dumps(_GOOD_MANIFEST)
BAD_MANIFESTS: list[bytes] = [
    b"",
    b"{",
    b"null",
    b"[]",
    b"{}",
    b"\xff\xfe",
    b'"just a string"',
    _GOOD_TEXT[: len(_GOOD_TEXT) // 2].encode(),
    _GOOD_TEXT[:-1].encode(),
    json.dumps({**_GOOD_MANIFEST, "packages": []}).encode(),
    json.dumps({**_GOOD_MANIFEST, "packages": {"torch": 1}}).encode(),
    json.dumps({**_GOOD_MANIFEST, "python": 3}).encode(),
    json.dumps({**_GOOD_MANIFEST, "created": "yesterday"}).encode(),
    json.dumps({**_GOOD_MANIFEST, "timings": [1]}).encode(),
    json.dumps({**_GOOD_MANIFEST, "requested": 5}).encode(),
    json.dumps({k: v for k, v in _GOOD_MANIFEST.items() if k != "base_id"}).encode(),
    json.dumps({**_GOOD_MANIFEST, "machine": "abc"}).encode(),
    json.dumps({**_GOOD_MANIFEST, "baseline": 7}).encode(),
    json.dumps({**_GOOD_MANIFEST, "schema": "1"}).encode(),
    json.dumps({**_GOOD_MANIFEST, "python": {**_GOOD_MANIFEST["python"], "version": "three"}}).encode(),
    json.dumps({**_GOOD_MANIFEST, "decision": {**_GOOD_MANIFEST["decision"], "channel": "weekly"}}).encode(),
    json.dumps({**_GOOD_MANIFEST, "verification": {"arch_list": ["sm_90"]}}).encode(),
]
EDITED_MANIFESTS: list[bytes] = [  # still parse: verify reports the missing files, nothing tracebacks
    json.dumps({**_GOOD_MANIFEST, "torch": None}).encode(),
    json.dumps({**_GOOD_MANIFEST, "base_id": "../../escape"}).encode(),
    json.dumps({**_GOOD_MANIFEST, "path": "/etc"}).encode(),
    json.dumps({**_GOOD_MANIFEST, "variant": "cu999"}).encode(),
]


@pytest.mark.parametrize("data", BAD_MANIFESTS + EDITED_MANIFESTS)
def test_bad_manifests_never_traceback(world: Path, data: bytes) -> None:
    base = world / "home" / "bases" / "cp311-linux_x86_64-torch2.9.1-cu128"
    base.mkdir()
    (base / "layerenv-manifest.json").write_bytes(data)
    unchanged = Unchanged(world)
    status = invoke(["status", "--json"], world / "home")
    no_traceback(status)
    assert status.exit_code == 0, status.stderr
    json.loads(status.stdout)
    verify = invoke(["verify"], world / "home")
    no_traceback(verify)
    assert verify.exit_code in (1, 2), verify.output  # the manifest is reported, never passes
    if verify.exit_code == 2:
        assert_clean_error(verify)
    doctor = invoke(["doctor"], world / "home")
    no_traceback(doctor)
    assert doctor.exit_code == (1 if data in BAD_MANIFESTS else doctor.exit_code), doctor.output
    if data in BAD_MANIFESTS:
        assert "unreadable" in doctor.output
    for args in (["gc", "--dry-run"], ["rebase", "--dry-run"]):
        result = invoke(args, world / "home")
        no_traceback(result)
        assert result.exit_code in (0, 1, 2), result.output
        if result.exit_code:
            assert_clean_error(result, result.exit_code)
    unchanged.check()


# The corpus size -------------------------------------------------------------------------------

HYPOTHESIS_TESTS = 9  # Hypothesis tests above, EXAMPLES inputs each (test_random_index_urls: 2 per example)


def corpus_counts() -> dict[str, int]:
    return {
        "config files (text x 3 places)": len(BAD_CONFIG_TEXTS) * 3,
        "config files (non-UTF-8 x 4 commands)": len(BAD_CONFIG_BYTES) * 4,
        "config wrong types + unknown keys (hypothesis)": 2 * EXAMPLES,
        "requirements lines": len(BAD_REQUIREMENT_LINES),
        "project files": len(BAD_PROJECT_FILES),
        "requirements random bytes (hypothesis)": EXAMPLES,
        "environment values (x 3 commands)": len(BAD_ENV) * 3 - 2,
        "environment values (hypothesis)": EXAMPLES + 2 * EXAMPLES,
        "command-line arguments": len(BAD_ARGS) + len(USAGE_ERRORS),
        "variant and base names (hypothesis, 2 commands)": 2 * EXAMPLES,
        "machine files with garbage (hypothesis, fallback)": EXAMPLES,
        "nvidia-smi junk (hypothesis, fallback)": EXAMPLES,
        "manifests truncated or edited (x 5 commands)": (len(BAD_MANIFESTS) + len(EDITED_MANIFESTS)) * 5,
    }


if __name__ == "__main__":  # python -m tests.test_bad_input_corpus: the corpus size quoted in benchmarks/
    counts = corpus_counts()
    print(f"bad-input corpus: {sum(counts.values())} inputs: " + "; ".join(f"{k} {v}" for k, v in counts.items()))
