"""The one exit boundary (``layerenv.cli.exit``): how every run ends, on the click path and the fast path.

A bug (any exception that is not a ``LayerenvError``) is one ``layerenv: error: internal error:`` line
naming a log that holds the traceback, exit 1; ``-v`` prints the traceback too. An interrupt is
``layerenv: interrupted`` (130); a reader that goes away ends the run quietly (1).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest

from layerenv.cli import entry
from layerenv.cli.exit import Invocation, exit_code_for
from tests.support.cli import FIXTURE_MACHINES, layerenv_env

INTERNAL = "layerenv: error: internal error: RuntimeError: status broke on line one and line two (details: "


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """An existing store, and the process environment pointing at it (restored afterwards)."""
    store = tmp_path / "home"
    store.mkdir()
    env = {
        "LAYERENV_HOME": str(store),
        "LAYERENV_SYSROOT": str(FIXTURE_MACHINES / "h100-580"),
        "LAYERENV_USER_CONFIG": str(tmp_path / "no-user-config.toml"),
    }
    with mock.patch.dict(os.environ, env):
        yield store


def _broken_status(monkeypatch: pytest.MonkeyPatch) -> None:
    import layerenv.lifecycle.status

    def status_document(*args: object, **kwargs: object) -> dict[str, object]:
        raise RuntimeError("status broke on line one\nand line two")

    monkeypatch.setattr(layerenv.lifecycle.status, "status_document", status_document)


def _run_entry(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """``layerenv ARGV`` through the console script's own ``main``, in this process."""
    monkeypatch.setattr(sys, "argv", ["layerenv", *argv])
    with pytest.raises(SystemExit) as exited:
        entry.main()
    code = exited.value.code
    assert isinstance(code, int)
    return code


def test_an_unexpected_exception_is_one_line_naming_a_log_that_holds_the_traceback(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _broken_status(monkeypatch)
    code = _run_entry(["status"], monkeypatch)
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(INTERNAL) and lines[0].endswith(")"), err
    log = Path(lines[0][len(INTERNAL) : -1])
    assert log.parent == home / "logs", "the log goes to the store's logs/"
    text = log.read_text(encoding="utf-8")
    assert "Traceback (most recent call last)" in text
    assert "in status_document" in text and "RuntimeError: status broke on line one" in text
    assert "argv: ['layerenv', 'status']" in text


def test_with_v_the_traceback_is_printed_before_the_line(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _broken_status(monkeypatch)
    code = _run_entry(["-v", "status"], monkeypatch)
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("Traceback (most recent call last)"), err
    assert "in status_document" in err
    assert err.splitlines()[-1].startswith(INTERNAL)


def test_a_layerenv_error_stays_one_line_without_a_log(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (["detect"], ["status"]):  # the fast path and the click path
        with mock.patch.dict(os.environ, {"LAYERENV_VARIANT": "cu999"}):
            assert _run_entry(argv, monkeypatch) == 2
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("layerenv: error: environment variable LAYERENV_VARIANT")
    assert not (home / "logs").exists()


def test_the_fast_path_reports_a_bug_the_same_way_without_click_and_without_a_store(tmp_path: Path) -> None:
    """`layerenv detect` never imports click; with no store the log goes to the temporary directory."""
    program = (
        "import sys\n"
        "import layerenv.choice.detection as detection\n"
        "def detect_with(*args, **kwargs):\n"
        "    raise RuntimeError('probe exploded')\n"
        "detection.detect_with = detect_with\n"
        "sys.argv = ['layerenv', 'detect']\n"
        "from layerenv.cli.entry import main\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        "    print('click imported' if 'click' in sys.modules else 'click not imported')\n"
    )
    env = layerenv_env(tmp_path / "no-store", base_env=os.environ, machine="h100-580", extra={"TMPDIR": str(tmp_path)})
    result = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 1, result.stderr
    assert result.stdout == "click not imported\n"
    prefix = "layerenv: error: internal error: RuntimeError: probe exploded (details: "
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), result.stderr
    log = Path(lines[0][len(prefix) : -1])
    assert log.parent == tmp_path and log.name.startswith("layerenv-internal-error-")
    assert "in detect_with" in log.read_text(encoding="utf-8")
    assert not (tmp_path / "no-store").exists(), "an error log does not create a store"


@pytest.mark.parametrize("argv", [["detect", "--json"], ["status", "--json"], ["detect", "--json", "remembered"]])
def test_a_reader_that_went_away_ends_the_run_quietly(tmp_path: Path, argv: list[str]) -> None:
    """``layerenv ... | head -0``: no traceback, no message, exit 1 (as click itself does), with stdout
    buffered as it is in a pipe (no PYTHONUNBUFFERED: the failure then comes at a flush), and for an
    answer given from memory too."""
    (tmp_path / "home").mkdir()
    env = layerenv_env(tmp_path / "home", base_env=os.environ, machine="h100-580")
    env.pop("PYTHONUNBUFFERED", None)
    if argv[-1] == "remembered":
        argv = argv[:-1]
        first = subprocess.run([sys.executable, "-m", "layerenv", *argv], env=env, capture_output=True, text=True,
                               check=False, cwd=tmp_path)
        assert first.returncode == 0 and list((tmp_path / "home" / "cache" / "answers").iterdir()), first.stderr
    read, write = os.pipe()
    os.close(read)  # before the child starts: its first write fails with EPIPE
    try:
        result = subprocess.run(
            [sys.executable, "-m", "layerenv", *argv], env=env, stdout=write, stderr=subprocess.PIPE,
            text=True, check=False, cwd=tmp_path,
        )
    finally:
        os.close(write)
    assert (result.returncode, result.stderr) == (1, "")


def test_an_interrupt_is_one_line_and_130(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import layerenv.lifecycle.status

    def status_document(*args: object, **kwargs: object) -> dict[str, object]:
        raise KeyboardInterrupt

    monkeypatch.setattr(layerenv.lifecycle.status, "status_document", status_document)
    assert _run_entry(["status"], monkeypatch) == 130
    assert capsys.readouterr() == ("", "layerenv: interrupted\n")
    assert exit_code_for(KeyboardInterrupt(), Invocation()) == 130  # the fast path's way in
    assert capsys.readouterr().err == "layerenv: interrupted\n"
