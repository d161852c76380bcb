"""Remembered answers of ``layerenv detect`` and ``layerenv base`` (:mod:`layerenv.cli.answers`).

A remembered answer must be given only while every input it came from is unchanged. The process tests
use the repository's machine fixtures, whose files are older than the settle window, so the first
call's answer is kept; a planted answer (the kept file's text replaced) shows whether a call was
answered from memory. The base tests run in process with the clock moved ahead, since a base just
built is younger than the settle window.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from layerenv.cli import answers
from tests.support.cli import FIXTURE_MACHINES, REPO, layerenv_env, run_layerenv
from tests.support.index import isolated_installer_env
from tests.support.pytest_fixtures import VariantIndexes

PLANTED = '{"planted": true}\n'


def answer_files(home: Path) -> list[Path]:
    folder = home / "cache" / "answers"
    return sorted(path for path in folder.iterdir() if not path.name.startswith(".")) if folder.is_dir() else []


def plant(path: Path, stdout: str = PLANTED) -> None:
    """Replace a kept answer's text, keeping what it rests on."""
    data = path.read_bytes()
    head = data[: data.index(b"\nO ") + 1] if b"\nO " in data else data[: data.index(b"O ")]
    out = stdout.encode()
    path.write_bytes(head + b"O %d\n" % len(out) + out + b"E 0\n")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


def detect(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    result = run_layerenv(["detect", "--json"], env, cwd)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return result


def test_a_detect_answer_is_kept_and_given_again(home: Path, tmp_path: Path) -> None:
    env = layerenv_env(home, base_env=os.environ, machine="rtx5090-580")
    first = detect(env, tmp_path)
    [kept] = answer_files(home)
    assert kept.name.startswith("detect-json-") and stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert detect(env, tmp_path).stdout == first.stdout
    plant(kept)
    assert detect(env, tmp_path).stdout == PLANTED  # answered from memory: the machine was not read


@pytest.mark.parametrize("change", ["machine", "visible", "project-config", "user-config", "form"])
def test_any_changed_input_reads_the_machine_again(home: Path, tmp_path: Path, change: str) -> None:
    env = layerenv_env(home, base_env=os.environ, machine="rtx5090-580")
    detect(env, tmp_path)
    [kept] = answer_files(home)
    plant(kept)
    cwd, args = tmp_path, ["detect", "--json"]
    if change == "machine":
        env["LAYERENV_SYSROOT"] = str(FIXTURE_MACHINES / "h100-580")
    elif change == "visible":
        env["CUDA_VISIBLE_DEVICES"] = ""
    elif change == "project-config":
        cwd = tmp_path / "project" / "src"
        cwd.mkdir(parents=True)
        (tmp_path / "project" / "layerenv.toml").write_text('[torch]\nvariant = "cpu"\n')
    elif change == "user-config":
        Path(env["LAYERENV_USER_CONFIG"]).write_text('[torch]\nvariant = "cu128"\n')
    elif change == "form":
        args = ["detect"]
    result = run_layerenv(args, env, cwd)
    assert result.returncode == 0, result.stderr
    assert "planted" not in result.stdout
    fresh = {key: value for key, value in env.items() if key != "LAYERENV_HOME"}
    fresh["LAYERENV_HOME"] = str(tmp_path / "fresh-home")
    expected = run_layerenv(args, fresh, cwd)
    assert result.stdout == expected.stdout


def test_an_answer_others_could_write_or_a_link_is_ignored(home: Path, tmp_path: Path) -> None:
    env = layerenv_env(home, base_env=os.environ, machine="rtx5090-580")
    expected = detect(env, tmp_path).stdout
    [kept] = answer_files(home)
    plant(kept)
    kept.chmod(0o620)
    assert detect(env, tmp_path).stdout == expected
    planted = tmp_path / "elsewhere"
    assert kept.stat().st_mode & 0o077 == 0  # the answer given in full was kept again, this user's only
    plant(kept)
    shutil.copyfile(kept, planted)
    planted.chmod(0o600)
    kept.unlink()
    kept.symlink_to(planted)
    assert detect(env, tmp_path).stdout == expected
    kept.unlink()
    shutil.copyfile(planted, kept)
    kept.chmod(0o600)
    (home / "cache").chmod(0o777)
    try:
        assert detect(env, tmp_path).stdout == expected
    finally:
        (home / "cache").chmod(0o755)
    assert detect(env, tmp_path).stdout == PLANTED  # the same file, trusted again


def test_a_store_a_settings_file_names_is_not_used_for_answers_an_empty_one_is(home: Path, tmp_path: Path) -> None:
    """The shipped layerenv.toml says ``[store] home = ""`` (the default); a file naming another store
    would put answers where a call that reads no file cannot look, so none are kept."""
    env = layerenv_env(home, base_env=os.environ, machine="rtx5090-580")
    project = tmp_path / "project"
    project.mkdir()
    (project / "layerenv.toml").write_text('[store]\nhome = ""\n')
    detect(env, project)
    assert len(answer_files(home)) == 1
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (project / "layerenv.toml").write_text(f'[store]\nhome = "{elsewhere}"\n')
    env.pop("LAYERENV_HOME")
    detect(env, project)
    assert len(answer_files(home)) == 1 and answer_files(elsewhere) == []


def test_detect_creates_no_store(tmp_path: Path) -> None:
    home = tmp_path / "no-store-yet"
    env = layerenv_env(home, base_env=os.environ, machine="rtx5090-580")
    detect(env, tmp_path)
    assert not home.exists()


def test_a_reading_whose_probe_failed_is_not_kept(home: Path, tmp_path: Path) -> None:
    from tests.support.fake_smi import install_fake_smi

    bin_dir = tmp_path / "bin"
    install_fake_smi(bin_dir, stdout=b"", exit_code=9)
    os.utime(bin_dir / "nvidia-smi", (time.time() - 60, time.time() - 60))
    env = layerenv_env(home, base_env=os.environ, machine="rtx5090-580")
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    detect(env, tmp_path)
    assert answer_files(home) == []


def test_the_machine_files_changed_reads_it_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A driver upgraded on a replayed machine: the same form and environment, another answer."""
    sysroot = tmp_path / "machine"
    shutil.copytree(FIXTURE_MACHINES / "rtx5090-570", sysroot)
    (tmp_path / "home").mkdir()
    env = {"LAYERENV_HOME": str(tmp_path / "home"), "LAYERENV_SYSROOT": str(sysroot), "PATH": "/usr/bin:/bin"}
    monkeypatch.setattr(answers, "clock", lambda: time.time_ns() + 10 * 10**9)
    assert answers.remember("detect-json", env, str(tmp_path), "driver 570\n", "", answers.clock())
    assert answers.recall("detect-json", env, str(tmp_path)) == ("driver 570\n", "")
    version = sysroot / "sys" / "module" / "nvidia" / "version"
    version.write_text(version.read_text().replace("570", "580"))
    assert answers.recall("detect-json", env, str(tmp_path)) is None


def test_files_changed_within_the_settle_window_are_not_kept(tmp_path: Path) -> None:
    sysroot = tmp_path / "machine"
    shutil.copytree(FIXTURE_MACHINES / "rtx5090-580", sysroot)  # written now: a later edit could share its tick
    (tmp_path / "home").mkdir()
    env = {"LAYERENV_HOME": str(tmp_path / "home"), "LAYERENV_SYSROOT": str(sysroot), "PATH": "/usr/bin:/bin"}
    assert not answers.remember("detect-json", env, str(tmp_path), "x\n", "", answers.clock())
    assert answers.recall("detect-json", env, str(tmp_path)) is None


def replayed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An environment on a replayed machine whose files are old, with a store, and the clock 10 s ahead
    (so that files made by the test are old enough to be remembered)."""
    (tmp_path / "home").mkdir()
    monkeypatch.setattr(answers, "clock", lambda: time.time_ns() + 10 * 10**9)
    return {"LAYERENV_HOME": str(tmp_path / "home"), "LAYERENV_SYSROOT": str(FIXTURE_MACHINES / "rtx5090-580"),
            "PATH": "/usr/bin:/bin"}


def changed(path: Path, change: object) -> None:
    """Apply ``change`` (a callable) until the path's ctime moves: a change within the same timestamp tick
    as the path's last one cannot show, which the settle window covers outside tests."""
    before = path.stat().st_ctime_ns
    while True:
        change()  # type: ignore[operator]
        if path.stat().st_ctime_ns != before:
            return


def test_an_edit_or_a_new_file_of_layerenv_itself_asks_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """layerenv's own files are each witnessed by their stat, and its folders by theirs: an edit in place
    (which leaves its folder as it was) and a file added both ask again."""
    env = replayed(tmp_path, monkeypatch)
    package = tmp_path / "site" / "layerenv"
    (package / "cli").mkdir(parents=True)
    (package / "__init__.py").write_text("x = 1\n")
    module = package / "cli" / "answers.py"
    module.write_text("y = 1\n")
    monkeypatch.setattr(answers, "_PACKAGE", str(package))

    def kept() -> tuple[str, str] | None:
        assert answers.remember("detect-json", env, str(tmp_path), "one\n", "", answers.clock())
        return answers.recall("detect-json", env, str(tmp_path))

    assert kept() == ("one\n", "")

    def edit() -> None:
        with module.open("r+b") as handle:  # in place: the folder's entries stay as they were
            handle.write(b"y = 2\n")

    folder_before = (package / "cli").stat().st_ctime_ns
    changed(module, edit)
    assert (package / "cli").stat().st_ctime_ns == folder_before
    assert answers.recall("detect-json", env, str(tmp_path)) is None
    assert kept() == ("one\n", "")
    (package / "cli" / "added.py").write_text("")
    assert answers.recall("detect-json", env, str(tmp_path)) is None
    assert kept() == ("one\n", "")
    (package / "cli" / "added.py").unlink()
    assert answers.recall("detect-json", env, str(tmp_path)) is None


def test_each_witness_is_looked_up_as_its_path_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Witnesses are stat'ed from their folder's descriptor, each as its path says: a followed link's
    target changed, a folder replaced by another holding the same names, and a folder missing when the
    answer was kept and there now each ask again."""
    env = replayed(tmp_path, monkeypatch)
    folder = tmp_path / "venv" / "lib"
    folder.mkdir(parents=True)
    (folder / "torch").mkdir()
    target = tmp_path / "elsewhere.py"
    target.write_text("")
    (folder / "link.py").symlink_to(target)
    missing = tmp_path / "later" / "sub"
    rests_on = [(str(folder / "torch"), False), (str(folder / "link.py"), True), (str(missing), False)]

    def kept() -> None:
        assert answers.remember("base", env, str(tmp_path), "reused\n", "", answers.clock(), rests_on)
        assert answers.recall("base", env, str(tmp_path)) == ("reused\n", "")

    kept()
    changed(target, lambda: target.chmod(target.stat().st_mode ^ stat.S_IWOTH))  # the link itself is as it was
    assert answers.recall("base", env, str(tmp_path)) is None
    kept()
    folder.rename(tmp_path / "venv" / "old-lib")
    folder.mkdir()
    (folder / "torch").mkdir()
    (folder / "link.py").symlink_to(target)
    assert answers.recall("base", env, str(tmp_path)) is None
    kept()
    missing.mkdir(parents=True)
    assert answers.recall("base", env, str(tmp_path)) is None


def test_a_cut_or_bent_answer_file_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = replayed(tmp_path, monkeypatch)
    rests_on = [(str(tmp_path / "home"), False), (str(tmp_path), True)]
    assert answers.remember("base", env, str(tmp_path), "reused\n", "", answers.clock(), rests_on)
    [kept] = answer_files(tmp_path / "home")
    data = kept.read_bytes()
    assert answers.recall("base", env, str(tmp_path)) == ("reused\n", "")
    witnesses = data.index(b"\nS ")
    bent = [data[:size] for size in range(0, len(data), 97)]
    bent += [data.replace(b"W ", b"W 9", 1), data.replace(b"W ", b"W -", 1), data.replace(b" 0 ", b" 2 ", 1),
             data[:witnesses] + b"\nx" + data[witnesses:], data[:witnesses] + b"\x00" + data[witnesses:]]
    for text in bent:
        kept.write_bytes(text)
        assert answers.recall("base", env, str(tmp_path)) is None, text


# --------------------------------------------------------------------------- base


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, variant_indexes: VariantIndexes) -> tuple[Path, dict[str, str]]:
    """A cu128 base on the replayed RTX 5090 (uv, local index)."""
    root = tmp_path_factory.mktemp("answers-base")
    installers = isolated_installer_env(uv_cache_dir=root / "uv-cache")
    installers.pop("CUDA_VISIBLE_DEVICES", None)
    env = layerenv_env(root / "home", base_env={**installers, "PIP_INDEX_URL": variant_indexes.pypi_url},
                       machine="rtx5090-580", installer="uv",
                       extra={"LAYERENV_INDEX_URL": variant_indexes.url_template, "LAYERENV_VARIANT": "cu128"})
    result = run_layerenv(["base"], env, root)
    assert result.returncode == 0, result.stderr
    return root, env


@pytest.fixture
def in_process(built: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The store's environment in this process, the clock 10 s ahead (the base was just built)."""
    root, env = built
    saved, cwd = dict(os.environ), Path.cwd()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(root)
    monkeypatch.setattr(answers, "clock", lambda: time.time_ns() + 10 * 10**9)
    try:
        yield root / "home"
    finally:
        os.environ.clear()
        os.environ.update(saved)
        os.chdir(cwd)
        for kept in answer_files(root / "home"):
            kept.unlink()


def console_script(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str, str]:
    """``layerenv ARGUMENTS`` through the console script's entry point, in this process: exit code, stdout, stderr."""
    from layerenv.cli.entry import main

    argv = sys.argv
    sys.argv = ["layerenv", *arguments]
    try:
        with pytest.raises(SystemExit) as ended:
            main()
    finally:
        sys.argv = argv
    captured = capsys.readouterr()
    return int(ended.value.code or 0), captured.out, captured.err


def base_json(capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    return console_script(capsys, "base", "--json")


def refuse_reuse(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any call that works the answer out fails loudly (so only a remembered answer can succeed)."""
    import layerenv.base.ensure

    def worked_out(*args: object, **kwargs: object) -> None:
        raise AssertionError("the base was looked up, not remembered")

    monkeypatch.setattr(layerenv.base.ensure, "reuse_base", worked_out)


def test_a_reused_base_answer_is_kept_and_given_again(in_process: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    code, first, _ = base_json(capsys)
    assert code == 0 and '"status": "reused"' in first
    assert [path.name.split("-")[0] for path in answer_files(in_process)] == ["base"]
    refuse_reuse(monkeypatch)
    assert base_json(capsys) == (0, first, "")


@pytest.mark.parametrize("change", ["package-writable", "store-folder-writable", "new-base", "node-record",
                                    "manifest"])
def test_a_changed_store_looks_the_base_up_again(in_process: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    folder = in_process / "locks"  # a layout folder the store's trust check reads, made by the build
    assert folder.is_dir()
    code, first, _ = base_json(capsys)
    assert code == 0
    [kept] = answer_files(in_process)
    plant(kept, '{"planted": true}\n')
    [base] = [path for path in (in_process / "bases").iterdir()]
    site = next(base.glob("lib/python*/site-packages"))
    undo = None
    if change == "package-writable":
        torch_dir = site / "torch"
        torch_dir.chmod(torch_dir.stat().st_mode | stat.S_IWOTH)
        undo = lambda: torch_dir.chmod(torch_dir.stat().st_mode & ~stat.S_IWOTH)  # noqa: E731
    elif change == "store-folder-writable":
        mode = stat.S_IMODE(folder.stat().st_mode)
        folder.chmod(0o777)
        undo = lambda: folder.chmod(mode)  # noqa: E731
    elif change == "new-base":
        (in_process / "bases" / "zz-other").mkdir()
        undo = (in_process / "bases" / "zz-other").rmdir
    elif change == "node-record":
        [record] = [path for path in (in_process / "nodes").rglob("*.txt")]
        record.write_text(record.read_text())  # rewritten in place: its stat changes
    elif change == "manifest":
        manifest = base / "layerenv-manifest.json"
        manifest.write_bytes(manifest.read_bytes())
    try:
        code, out, err = base_json(capsys)
    finally:
        if undo is not None:
            undo()
    assert "planted" not in out
    if change == "package-writable":  # the trust check ran again, and refused
        assert code != 0 and "writable by other users" in err, err
    elif change == "store-folder-writable":  # the store's own check ran again, and refused
        assert code == 2 and "writable by others" in err and str(folder) in err, err
    else:
        assert (code, out) == (0, first)


def test_a_remembered_answer_imports_only_what_it_needs(built: tuple[Path, dict[str, str]]) -> None:
    """A remembered answer imports neither click, the release table, a TOML parser nor collections: what
    makes it cost about what starting Python costs."""
    root, env = built
    script = "import sys; from layerenv.cli.entry import main; sys.exit(main())"  # what uv writes
    env = {**env, "LAYERENV_SYSROOT": str(FIXTURE_MACHINES / "no-gpu"), "PYTHONPATH": str(REPO)}
    for _ in range(2):  # the first works the answer out and keeps it
        result = subprocess.run([sys.executable, "-X", "importtime", "-c", script, "detect", "--json"], env=env,
                                cwd=root, capture_output=True, text=True, check=False, timeout=60)
        assert result.returncode == 0, result.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "layerenv.cli.answers" in imported
    assert not {name for name in imported if name.startswith(("click", "layerenv.choice", "tomllib", "tomli",
                                                                 "collections", "typing", "json", "re"))}


# --------------------------------------------------------------------------- project


def project(capsys: pytest.CaptureFixture[str], folder: Path) -> tuple[int, str, str]:
    """``layerenv project FOLDER`` in this process: exit code, stdout and stderr, with FOLDER written as {p}."""
    folder.mkdir(exist_ok=True)
    code, out, err = console_script(capsys, "project", str(folder))
    return code, out.replace(str(folder), "{p}"), err.replace(str(folder), "{p}")


def machine_reads(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Each reading of the machine from now on (the list grows by one a reading)."""
    import layerenv.choice.detection

    reads: list[object] = []
    real = layerenv.choice.detection.detect_with

    def counted(*args: object, **kwargs: object) -> object:
        reads.append(args)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(layerenv.choice.detection, "detect_with", counted)
    return reads


def test_a_project_finds_its_remembered_base_without_reading_the_machine(
        in_process: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The second project on a store asks neither the machine, the release table nor the trust check which
    base it gets, and ends as the first did: the same lines, links, state and node record."""
    import layerenv.base.current

    root = in_process.parent
    code, first_out, first_err = project(capsys, root / "remembered-a")
    assert code == 0, first_err
    assert "project-base" in [path.name.rsplit("-", 1)[0] for path in answer_files(in_process)]
    node = {path: path.read_bytes() for path in (in_process / "nodes").rglob("*") if path.is_file()}
    reads = machine_reads(monkeypatch)

    def looked_up(*args: object, **kwargs: object) -> None:
        raise AssertionError("the base was looked up, not remembered")

    monkeypatch.setattr(layerenv.base.current, "usable_current", looked_up)
    monkeypatch.setattr(layerenv.base.current, "refuse_writable_by_others", looked_up)
    assert project(capsys, root / "remembered-b") == (0, first_out, first_err)
    assert reads == []
    for name in ("layerenv.json", "layerenv-project.json"):
        texts = [json_of(root / folder / ".venv" / name, root / folder) for folder in ("remembered-a", "remembered-b")]
        assert texts[0] == texts[1], name
    assert {path: path.read_bytes() for path in (in_process / "nodes").rglob("*") if path.is_file()} == node


def json_of(path: Path, folder: Path) -> object:
    """A state file's content with ``folder`` written as {p} and its creation time left out."""
    import json

    document = json.loads(path.read_text().replace(str(folder), "{p}"))
    if isinstance(document, dict):
        document.pop("created", None)
    return document


@pytest.mark.parametrize("change", ["env", "project-settings", "python-version", "machine", "new-base", "manifest",
                                    "node-record", "package-writable", "store-folder-writable"])
def test_a_changed_input_looks_the_projects_base_up_again(
        in_process: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    """Each input of the base lookup changed: the lookup runs in full (the machine read again, or the
    store's own check refusing first), and ends as it does with no answer kept at all."""
    root = in_process.parent
    if change == "machine":  # a copy of the machine's files, to upgrade its driver
        sysroot = root / "machine-copy"
        if not sysroot.exists():
            shutil.copytree(FIXTURE_MACHINES / "rtx5090-580", sysroot)
        os.environ["LAYERENV_SYSROOT"] = str(sysroot)
    code, _, err = project(capsys, root / f"first-{change}")
    assert code == 0 and answer_files(in_process), err
    [base] = list((in_process / "bases").iterdir())
    target = root / f"changed-{change}"
    target.mkdir(exist_ok=True)
    undo: Callable[[], object] | None = None
    if change == "env":
        os.environ["UV_NO_PROGRESS"] = "1"
    elif change == "project-settings":
        (target / "layerenv.toml").write_text('[torch]\nvariant = "cu128"\n')
    elif change == "python-version":
        (target / ".python-version").write_text(f"{sys.version_info.major}.{sys.version_info.minor}\n")
    elif change == "machine":
        version = root / "machine-copy" / "sys" / "module" / "nvidia" / "version"
        text = version.read_text()
        version.write_text(text.replace("580", "581"))
        undo = lambda: version.write_text(text)  # noqa: E731
    elif change == "new-base":
        (in_process / "bases" / "zz-other").mkdir()
        undo = (in_process / "bases" / "zz-other").rmdir
    elif change == "manifest":
        manifest = base / "layerenv-manifest.json"
        manifest.write_bytes(manifest.read_bytes())
    elif change == "node-record":
        [record] = list((in_process / "nodes").rglob("*.txt"))
        record.write_text(record.read_text())
    elif change == "package-writable":
        torch_dir = next(base.glob("lib/python*/site-packages")) / "torch"
        torch_dir.chmod(torch_dir.stat().st_mode | stat.S_IWOTH)
        undo = lambda: torch_dir.chmod(torch_dir.stat().st_mode & ~stat.S_IWOTH)  # noqa: E731
    elif change == "store-folder-writable":
        folder = in_process / "locks"
        mode = stat.S_IMODE(folder.stat().st_mode)
        folder.chmod(0o777)
        undo = lambda: folder.chmod(mode)  # noqa: E731
    reads = machine_reads(monkeypatch)
    try:
        changed_result = project(capsys, target)
        for kept in answer_files(in_process):
            kept.unlink()
        fresh = project(capsys, root / f"fresh-{change}")
    finally:
        if undo is not None:
            undo()
    assert changed_result == fresh
    if change == "package-writable":  # the trust check ran, and refused as it does unremembered
        assert changed_result[0] == 1 and "writable by other users" in changed_result[2]
    elif change == "store-folder-writable":  # the store's own check, at every open, refused first
        assert changed_result[0] == 2 and "writable by others" in changed_result[2]
    else:
        assert changed_result[0] == 0 and len(reads) == 2, changed_result  # the changed run, then the fresh one


def test_a_remembered_project_base_imports_no_machine_reading(
        in_process: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The process that finds its base remembered imports neither the probes nor the detection."""
    root = in_process.parent
    assert project(capsys, root / "imports-a")[0] == 0
    (root / "imports-b").mkdir()
    script = "import sys; from layerenv.cli.entry import main; sys.exit(main())"  # what uv writes
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", script, "project", str(root / "imports-b")],
                            env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=root, capture_output=True, text=True,
                            check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "layerenv.cli.answers" in imported and "layerenv.project.create" in imported
    assert not imported & {"layerenv.choice.detection", "layerenv.choice.outlook", "layerenv.machine.nvidia",
                           "layerenv.machine.nvml", "layerenv.machine.sysfs", "layerenv.machine.reader"}


def click_project(capsys: pytest.CaptureFixture[str], folder: Path, *extra: str) -> tuple[int, str, str]:
    """``layerenv project FOLDER`` through the click CLI (as a form with options goes), FOLDER written as {p}."""
    from layerenv.cli.main import cli

    folder.mkdir(exist_ok=True)
    with pytest.raises(SystemExit) as ended:
        cli.main(["project", str(folder), *extra], prog_name="layerenv")
    captured = capsys.readouterr()
    return (int(ended.value.code or 0), captured.out.replace(str(folder), "{p}"),
            captured.err.replace(str(folder), "{p}"))


def test_the_plain_project_form_ends_as_the_click_command_does(
        in_process: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``layerenv project [PATH]`` is answered without click, and gives what the click command gives: the
    lines, the exit code, the venv's state; a bad path is the same one line and exit 2."""
    root = in_process.parent
    fast = project(capsys, root / "plain-fast")
    slow = click_project(capsys, root / "plain-click")
    assert fast[0] == 0 and fast == slow, (fast, slow)
    for name in ("layerenv.json", "layerenv-project.json"):
        texts = [json_of(root / folder / ".venv" / name, root / folder) for folder in ("plain-fast", "plain-click")]
        assert texts[0] == texts[1], name
    missing = root / "plain-missing"
    from layerenv.cli.main import cli

    with pytest.raises(SystemExit) as ended:
        cli.main(["project", str(missing)], prog_name="layerenv")
    captured = capsys.readouterr()
    through_click = (int(ended.value.code or 0), captured.out, captured.err)
    refused = (2, "", f"layerenv: error: project path {missing} does not exist\n")
    assert console_script(capsys, "project", str(missing)) == refused == through_click


def test_the_plain_project_form_imports_no_click(built: tuple[Path, dict[str, str]]) -> None:
    root, env = built
    (root / "no-click").mkdir()
    script = "import sys; from layerenv.cli.entry import main; sys.exit(main())"  # what uv writes
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", script, "project", str(root / "no-click")],
                            env={**env, "PYTHONPATH": str(REPO)}, cwd=root, capture_output=True, text=True,
                            check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "layerenv.cli.make_project" in imported
    assert not {name for name in imported if name == "click" or name.startswith("click.")}


def test_a_plain_base_that_builds_reads_the_machine_once_and_ends_as_the_click_command_does(
        in_process: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``layerenv base`` where no base fits goes on from its reuse attempt (which read the machine) to the
    build, in the same session: one reading, and the lines, exit code and base of the click command."""
    from layerenv.cli.main import cli

    summaries = []
    for name, how in (("plain", "console script"), ("click", "click")):
        monkeypatch.setenv("LAYERENV_HOME", str(in_process.parent / f"home-{name}"))
        reads = machine_reads(monkeypatch)
        if how == "click":
            with pytest.raises(SystemExit) as ended:
                cli.main(["base", "--json"], prog_name="layerenv")
            captured = capsys.readouterr()
            code, out, err = int(ended.value.code or 0), captured.out, captured.err
        else:
            code, out, err = console_script(capsys, "base", "--json")
        assert code == 0 and json.loads(out)["status"] == "built", err
        assert len(reads) == 1, f"{name}: the machine was read {len(reads)} times"
        home = str(in_process.parent / f"home-{name}")
        summary = json.loads(out.replace(home, "{home}"))
        summaries.append(({key: value for key, value in summary.items() if key not in ("created", "timings")},
                          err.replace(home, "{home}").splitlines()))
    assert summaries[0] == summaries[1]


def test_a_plain_base_build_imports_no_click(built: tuple[Path, dict[str, str]]) -> None:
    root, env = built
    script = "import sys; from layerenv.cli.entry import main; sys.exit(main())"  # what uv writes
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", script, "base"],
                            env={**env, "PYTHONPATH": str(REPO), "LAYERENV_HOME": str(root / "home-no-click")},
                            cwd=root, capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0 and "built:" in result.stdout, result.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "layerenv.cli.make_base" in imported
    assert not {name for name in imported if name == "click" or name.startswith("click.")}


@pytest.mark.parametrize(("argv", "path"), [
    (["project"], "."), (["project", "repo"], "repo"), (["project", "-v"], None), (["project", "--python", "3.11"], None),
    (["project", "repo", "--extra", "x"], None), (["project", "--"], None), (["base"], None), ([], None),
])
def test_only_the_plain_project_form_skips_click(argv: list[str], path: str | None) -> None:
    from layerenv.cli.entry import _project_path

    assert _project_path(argv) == path
