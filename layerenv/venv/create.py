"""Creating a virtualenv through virtualenv's Python API, with a one-line error when it fails."""

from __future__ import annotations

from pathlib import Path

from layerenv.errors import OperationFailed


def create_virtualenv(
    path: Path, python: Path, *, prompt: str, seed_pip: bool = True, system_site_packages: bool = False
) -> None:
    """A venv at ``path`` for ``python``: pip seeded (no setuptools) or nothing seeded."""
    from virtualenv import cli_run

    args = [str(path), "--python", str(python), "--no-vcs-ignore", "--no-periodic-update", "--quiet"]
    args += [f"--prompt={prompt}", *(["--no-setuptools"] if seed_pip else ["--no-seed"])]
    if system_site_packages:
        args.append("--system-site-packages")
    try:
        cli_run(args, setup_logging=False)
    except (OSError, RuntimeError) as error:
        # virtualenv's message can carry a whole traceback (a full disk while seeding pip): keep its last line
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        raise OperationFailed(f"creating the virtualenv at {path} failed: {lines[-1] if lines else error}") from None
    _drop_venv_redirect(path)


def _drop_venv_redirect(path: Path) -> None:
    """virtualenv 21.15+ writes a PEP 832 ``.venv`` redirect file beside a new venv in a folder with a
    ``pyproject.toml``; for a staged project venv it would name the staging folder and, left behind
    by a failed update, block the next ``layerenv project``."""
    redirect = path.parent / ".venv"
    if path.name != ".venv" and redirect.is_file() and not redirect.is_symlink():
        try:
            if redirect.read_text(encoding="utf-8").strip() == path.name:
                redirect.unlink()
        except (OSError, UnicodeDecodeError):
            pass
