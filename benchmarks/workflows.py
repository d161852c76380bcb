"""poetry install, uv sync and pip install -r of a project needing torchmetrics and einops: in a layerenv
project on the real torch 2.13.0+cpu base vs a plain venv that already holds the same torch.

Targets (issue 14): torch-family bytes downloaded 0; the layered `.venv` < 1.05x the non-torch packages
it holds; wall time layered / plain <= 1.0x.
torch resolves from a local index served here (the real wheel from --real-wheels, hard-linked),
declared as the project's explicit torch source; the rest comes from PyPI (--pypi). The locks are made
once, before timing; every timed install starts from caches warmed by an untimed install of the same
lock, so the figures compare the installers' work, not the network. The plain venv (virtualenv, pip seeded
as layerenv seeds a project venv) gets the real torch before timing, from --real-wheels as find-links (uv pip
install: the same files pip would write, in seconds from uv's cache).
"uv sync, 2 to install": the same lock after the project's torchmetrics and einops were uninstalled
(`uv pip uninstall`, untimed) on each side, so the layered `uv sync` does a full `layerenv sync` rather than
answering that the venv is as `layerenv project` left it (each layered `uv sync` must say which it did).
Run: python benchmarks/workflows.py [--runs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from _common import REPO, du, layerenv, uv

from layerenv import tomlcompat
from layerenv.venv.distinfo import canonical_name, is_family
from tests.support.index import IndexServer, serve_index, write_simple_index
from tests.support.wheels import parse_wheel_filename

TORCH = "2.13.0+cpu"
WORKFLOWS = ("poetry install", "uv sync", "uv sync, 2 to install", "pip install -r")
DROPPED = ("torchmetrics", "einops")  # uninstalled before "uv sync, 2 to install": the sync has work to do

POETRY_PYPROJECT = """\
[tool.poetry]
package-mode = false

[tool.poetry.dependencies]
python = ">=3.11,<3.12"
torch = {{version = "{torch}", source = "torch-cpu"}}
torchmetrics = "*"
einops = "*"

[[tool.poetry.source]]
name = "torch-cpu"
url = "{index}"
priority = "explicit"
"""

UV_PYPROJECT = """\
[project]
name = "app"
version = "0.1.0"
requires-python = ">=3.11,<3.12"
dependencies = ["torch=={torch}", "torchmetrics", "einops"]

[tool.uv]
environments = ["sys_platform == 'linux' and platform_machine == 'x86_64'"]

[[tool.uv.index]]
name = "torch-cpu"
url = "{index}"
explicit = true

[tool.uv.sources]
torch = {{ index = "torch-cpu" }}
"""


def run(argv: list[str], cwd: Path, env: Mapping[str, str], expect: str = "") -> float:
    """Seconds ``argv`` took; it must succeed and print ``expect`` (on stderr)."""
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=dict(env), capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or expect not in done.stderr:
        raise SystemExit(f"benchmark step failed: {' '.join(argv)} (expected {expect!r})\n{done.stdout}{done.stderr}")
    return elapsed


def installer_env(scratch: Path, pypi: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "UV_", "POETRY_", "LAYERENV_")) and k not in ("VIRTUAL_ENV", "CONDA_PREFIX")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PIP_INDEX_URL=pypi,
               PIP_CACHE_DIR=str(scratch / "pip-cache"), UV_NO_CONFIG="1", UV_PYTHON_DOWNLOADS="never",
               UV_CACHE_DIR=str(scratch / "uv-cache"), POETRY_CACHE_DIR=str(scratch / "poetry-cache"),
               POETRY_CONFIG_DIR=str(scratch / "poetry-config"), POETRY_DATA_DIR=str(scratch / "poetry-data"),
               POETRY_VIRTUALENVS_IN_PROJECT="true", POETRY_NO_INTERACTION="1",
               PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring")
    return env


def poetry_with_plugin(scratch: Path) -> Path:
    """Poetry's environment with this checkout of layerenv in it, as `poetry self add` leaves it;
    returns its bin directory (holding `poetry`)."""
    import virtualenv

    home = scratch / "poetry-home"
    virtualenv.cli_run([str(home), "--no-periodic-update", "--no-seed", "-p", sys.executable], setup_logging=False)
    site = next((home / "lib").glob("python*/site-packages"))
    project = tomlcompat.loads((REPO / "pyproject.toml").read_text())["project"]
    groups = {"console_scripts": project["scripts"], **project["entry-points"]}
    from layerenv import __version__

    dist_info = site / f"layerenv-{__version__}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: layerenv\nVersion: {__version__}\n")
    (dist_info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in items.items()) + "\n" for group, items in groups.items()))
    (dist_info / "INSTALLER").write_text("pip\n")
    (dist_info / "RECORD").write_text("")
    poetry_prefix = Path(shutil.which("poetry") or "poetry").resolve().parent.parent
    dev_site = next((poetry_prefix / "lib").glob("python*/site-packages"))
    (site / "_layerenv_editable.pth").write_text(f"{REPO}\nimport site; site.addsitedir({str(dev_site)!r})\n")
    script = home / "bin" / "poetry"
    script.write_text(f"#!{home / 'bin' / 'python'}\nimport sys\nfrom poetry.console.application import main\n"
                      "sys.exit(main())\n")
    script.chmod(0o755)
    return home / "bin"


def family_bytes(server: IndexServer) -> int:
    """Bytes of torch-family wheels fetched from the torch index since the last reset."""
    files = server.root / "torch-cpu" / "files"
    return sum((files / name).stat().st_size * count for name, count in server.wheel_downloads().items()
               if is_family(parse_wheel_filename(name)[0]))


def non_torch_bytes(venv: Path) -> int:
    """Disk used by the files of the packages the venv holds for itself (the family's stubs excluded),
    counted as `du` counts the venv (allocated blocks), so the ratio is layerenv's overhead alone."""
    site = next((venv / "lib").glob("python*/site-packages"))
    total = 0
    for dist_info in site.glob("*.dist-info"):
        if (dist_info / "LAYERENV_STUB").is_file() or is_family(canonical_name(dist_info.name.rsplit("-", 1)[0])):
            continue
        record = dist_info / "RECORD"
        for line in record.read_text().splitlines() if record.is_file() else []:
            path = site / line.split(",", 1)[0]
            if path.is_file():
                total += path.stat().st_blocks * 512
    return total


class Bench:
    def __init__(self, scratch: Path, options: argparse.Namespace, server: IndexServer) -> None:
        self.scratch = scratch
        self.server = server
        self.wheel = Path(options.wheel)
        self.env = installer_env(scratch, options.pypi)
        self.layerenv_env = {**self.env, "LAYERENV_HOME": str(scratch / "home"),
                             "LAYERENV_USER_CONFIG": str(scratch / "none.toml"), "PYTHONPATH": str(REPO),
                             "LAYERENV_SYSROOT": str(REPO / "tests" / "fixtures" / "machines" / "no-gpu")}
        self.index = server.url_for("torch-cpu/simple") + "/"
        self.poetry_bin = poetry_with_plugin(scratch)
        self.count = 0
        self.locks: dict[str, dict[str, str]] = {}

    def files(self, workflow: str) -> dict[str, str]:
        if workflow == "poetry install":
            return {"pyproject.toml": POETRY_PYPROJECT.format(torch=TORCH, index=self.index)}
        if workflow.startswith("uv sync"):
            return {"pyproject.toml": UV_PYPROJECT.format(torch=TORCH, index=self.index)}
        return {"requirements.txt": "torchmetrics\neinops\n"}

    def lock(self, workflow: str) -> dict[str, str]:
        """The project's files with its lock, made once (per tool) in a directory of its own."""
        files = self.files(workflow)
        if workflow == "pip install -r":
            return files
        tool = workflow.split(maxsplit=1)[0]
        if tool in self.locks:
            return self.locks[tool]
        where = self.scratch / f"lock-{tool}"
        where.mkdir()
        for name, text in files.items():
            (where / name).write_text(text)
        if workflow == "poetry install":
            run([str(self.poetry_bin / "poetry"), "lock"], where, self.env)
            self.locks[tool] = {**files, "poetry.lock": (where / "poetry.lock").read_text()}
        else:
            run([uv(), "lock"], where, self.env)
            self.locks[tool] = {**files, "uv.lock": (where / "uv.lock").read_text()}
        return self.locks[tool]

    def project(self, files: Mapping[str, str], layered: bool) -> Path:
        self.count += 1
        project = self.scratch / f"{'layered' if layered else 'plain'}-{self.count}" / "app"
        project.mkdir(parents=True)
        for name, text in files.items():
            (project / name).write_text(text)
        if layered:
            run(layerenv("project", str(project)), project.parent, self.layerenv_env)
        else:
            # Seeded as layerenv seeds a project venv (virtualenv's pip, no setuptools), so both sides
            # run the same pip.
            run([sys.executable, "-m", "virtualenv", "-q", "--no-periodic-update", "--no-setuptools",
                 str(project / ".venv")], project.parent, self.env)
            # From find-links, not the file's path: a path install records a direct URL, and uv and
            # poetry would then reinstall torch to match the lock's source.
            run([uv(), "pip", "install", "-q", "--python", str(project / ".venv" / "bin" / "python"),
                 "--find-links", str(self.wheel.parent), f"torch=={TORCH}"], project.parent, self.env)
        return project

    def prepare(self, workflow: str, project: Path, layered: bool) -> None:
        """Untimed: for "uv sync, 2 to install", the project synced, then two of its packages gone."""
        if workflow != "uv sync, 2 to install":
            return
        if not layered:
            run([uv(), "sync"], project, self.env)
        run([uv(), "pip", "uninstall", "--python", str(project / ".venv" / "bin" / "python"), *DROPPED],
            project, self.env)

    def install(self, workflow: str, project: Path, layered: bool) -> float:
        venv = project / ".venv"
        if workflow == "poetry install":
            env = {**self.env, "PATH": os.pathsep.join([str(self.poetry_bin), self.env["PATH"]])}
            return run(["poetry", "install"], project, env)
        if workflow.startswith("uv sync"):
            if layered:  # an activated shell: the venv's uv wrapper first on PATH
                env = {**self.env, "VIRTUAL_ENV": str(venv),
                       "PATH": os.pathsep.join([str(venv / "bin"), str(Path(uv()).parent), self.env["PATH"]]),
                       # An installed layerenv has its bytecode; this checkout, under the
                       # PYTHONDONTWRITEBYTECODE of this repository's machine, would compile its modules
                       # on every start of the wrapper: they are cached under the scratch directory instead.
                       "PYTHONPYCACHEPREFIX": str(self.scratch / "pycache")}
                env.pop("PYTHONDONTWRITEBYTECODE", None)
                expect = "sync: up to date" if workflow == "uv sync" else f"installed {len(DROPPED)}, removed 0"
                return run(["uv", "sync"], project, env, expect)
            return run([uv(), "sync"], project, self.env)
        return run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-r", "requirements.txt"],
                   project, self.env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1, help="timed installs of each workflow on each side")
    parser.add_argument("--real-wheels", default="/opt/wheels", help="directory holding the real torch wheel")
    parser.add_argument("--pypi", default="https://pypi.org/simple", help="index for everything but torch")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    wheels = sorted(Path(options.real_wheels).glob(f"torch-{TORCH}-cp311-cp311-*.whl"))
    if not wheels or sys.version_info[:2] != (3, 11):
        raise SystemExit(f"needs Python 3.11 and torch-{TORCH}-cp311 in {options.real_wheels}")
    options.wheel = str(wheels[-1])
    scratch = Path(tempfile.mkdtemp(prefix="layerenv-bench-workflows-"))
    try:
        files = scratch / "index" / "torch-cpu" / "files"
        files.mkdir(parents=True)
        try:
            os.link(wheels[-1], files / wheels[-1].name)
        except OSError:
            (files / wheels[-1].name).symlink_to(wheels[-1])
        write_simple_index(scratch / "index" / "torch-cpu", [files / wheels[-1].name])
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("LAYERENV_")}
        base_env.update(LAYERENV_HOME=str(scratch / "home"), LAYERENV_USER_CONFIG=str(scratch / "none.toml"),
                        LAYERENV_SYSROOT=str(REPO / "tests" / "fixtures" / "machines" / "no-gpu"),
                        LAYERENV_INDEX_URL=f"file://{scratch}/unreachable/{{variant}}",
                        LAYERENV_FIND_LINKS=options.real_wheels, LAYERENV_TORCH="2.13.0", PYTHONPATH=str(REPO))
        run(layerenv("base"), scratch, base_env)
        with serve_index(scratch / "index") as server:
            bench = Bench(scratch, options, server)
            results = {}
            for workflow in WORKFLOWS:
                locked = bench.lock(workflow)
                for layered in (True, False):  # untimed: warms the caches both sides read
                    project = bench.project(locked, layered)
                    bench.prepare(workflow, project, layered)
                    bench.install(workflow, project, layered)
                times: dict[bool, list[float]] = {True: [], False: []}
                fetched: dict[bool, int] = {True: 0, False: 0}
                ratio_of_size: list[float] = []
                for run_number in range(options.runs):
                    order = (True, False) if run_number % 2 == 0 else (False, True)
                    for layered in order:
                        project = bench.project(locked, layered)
                        bench.prepare(workflow, project, layered)
                        server.reset()
                        times[layered].append(bench.install(workflow, project, layered))
                        fetched[layered] += family_bytes(server)
                        if layered:
                            venv = project / ".venv"
                            ratio_of_size.append(du(venv) / non_torch_bytes(venv))
                            out = subprocess.run(
                                [str(venv / "bin" / "python"), "-c",
                                 "import torch, torchmetrics, einops; print(torch.__file__)"],
                                capture_output=True, text=True, check=True).stdout
                            assert out.startswith(str(scratch / "home" / "bases")), out
                results[workflow] = {
                    "runs": options.runs,
                    "layered_s": times[True], "plain_s": times[False],
                    "time_ratio": statistics.median(times[True]) / statistics.median(times[False]),
                    "family_bytes_layered": fetched[True], "family_bytes_plain": fetched[False],
                    "venv_size_ratio": statistics.median(ratio_of_size),
                }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if options.json:
        print(json.dumps(results, indent=2))
        return
    print(f"real torch {TORCH}; {options.runs} timed run(s) a side; targets: torch-family bytes 0, "
          ".venv < 1.05x its non-torch packages, time layered/plain <= 1.0x")
    print(f"{'workflow':21} {'layered s':>16} {'plain s':>16} {'ratio':>6} {'torch bytes (plain)':>20} "
          f"{'.venv/pkgs':>10}")
    for workflow, row in results.items():
        layered = "/".join(f"{t:.2f}" for t in row["layered_s"])
        plain = "/".join(f"{t:.2f}" for t in row["plain_s"])
        fetched = f"{row['family_bytes_layered']} ({row['family_bytes_plain']})"
        print(f"{workflow:21} {layered:>16} {plain:>16} {row['time_ratio']:6.2f} {fetched:>20} "
              f"{row['venv_size_ratio']:10.3f}")

if __name__ == "__main__":
    main()
