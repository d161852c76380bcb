"""Creating a venv: virtualenv's Python API, or (for a project venv) a copy of a base venv's shape
with the path and prompt put in, which costs a few small writes instead of virtualenv's start-up."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from layerenv.errors import BadInput, OperationFailed
from layerenv.venv.layout import VenvLayout

#: The prompt a base venv is created with; the activation scripts a project venv copies from it carry it.
BASE_PROMPT = "layerenv-base"
#: The files virtualenv and uv write into ``bin/`` that a venv's path or prompt appear in (uv writes cmd's
#: scripts on every platform, virtualenv only on Windows).
_SCRIPTS = ("activate", "activate.csh", "deactivate.csh", "activate.fish", "activate.nu", "activate.ps1",
            "activate.xsh", "activate_this.py", "activate.bat", "deactivate.bat", "pydoc.bat")
#: The ``pyvenv.cfg`` keys naming the tool that made a venv whose shape :func:`clone_shape` can copy.
_MAKERS = ("virtualenv", "uv")
#: Text every activation script writes as it is (virtualenv quotes nothing else): no quote, space, `$` or `!`.
_PLAIN = re.compile(r"[\w@%+=:,./-]+", re.ASCII)


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


def clone_shape(template: Path, path: Path, *, prompt: str, system_site_packages: bool) -> bool:
    """Make at ``path`` the empty venv the tool that made ``template`` would make there with ``prompt``:
    ``template`` is a venv virtualenv or ``uv venv`` made with the prompt :data:`BASE_PROMPT`, and its
    ``pyvenv.cfg``, interpreter links and activation scripts are copied, the template's path and prompt
    replaced (uv's ``.gitignore`` and ``.lock`` are left out: a project venv made by virtualenv has neither).

    False, with nothing written, where that would not be what the tool writes (Windows, copied
    interpreters, another tool's venv, a path or prompt a shell script must quote): then use
    :func:`create_virtualenv`.
    """
    bin_dir = template / "bin"
    config = _template_config(template)
    if config is None or not all(_PLAIN.fullmatch(text) for text in (str(template), str(path), prompt)):
        return False
    links = sorted(entry for entry in bin_dir.glob("python*") if entry.is_symlink())
    if bin_dir / "python" not in links:
        return False
    try:
        site = path / VenvLayout.for_venv(template).site_packages.relative_to(template)  # lib/python3.13t/... too
    except BadInput:
        return False
    replace = _replacer({str(template): str(path), BASE_PROMPT: prompt})
    site.mkdir(parents=True)
    (path / "bin").mkdir()
    for link in links:
        (path / "bin" / link.name).symlink_to(os.readlink(link))
    for name in _SCRIPTS:
        if (bin_dir / name).is_file():
            (path / "bin" / name).write_bytes(replace((bin_dir / name).read_bytes()))
    for name in ("include", "lib64"):
        source = template / name
        if source.is_symlink():
            (path / name).symlink_to(os.readlink(source))
        elif source.is_dir():
            (path / name).mkdir()
    for name in ("_virtualenv.pth", "_virtualenv.py"):  # virtualenv < 20.27 puts its distutils patch in each venv
        if (source := template / site.relative_to(path) / name).is_file():
            (site / name).write_bytes(source.read_bytes())
    if (template / "CACHEDIR.TAG").is_file():
        (path / "CACHEDIR.TAG").write_bytes((template / "CACHEDIR.TAG").read_bytes())
    quote = '"' if dict(config).get("prompt", "").startswith('"') else ""  # virtualenv quotes it, uv does not
    settings = {"prompt": f"{quote}{prompt}{quote}", "include-system-site-packages": str(system_site_packages).lower()}
    lines = [f"{key} = {settings.get(key, value)}" for key, value in config if key != "command"]
    (path / "pyvenv.cfg").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return True


def is_template(venv: Path) -> bool:
    """Whether :func:`clone_shape` can copy ``venv``'s shape: virtualenv or uv made it with :data:`BASE_PROMPT`."""
    return _template_config(venv) is not None and (venv / "bin" / "python").is_symlink()


def _template_config(venv: Path) -> list[tuple[str, str]] | None:
    """The ``pyvenv.cfg`` lines of a venv virtualenv or uv made with :data:`BASE_PROMPT` (POSIX), else None."""
    config = None if sys.platform == "win32" else _pyvenv_lines(venv / "pyvenv.cfg")
    if config is None:
        return None
    values = dict(config)
    made_by = sum(maker in values for maker in _MAKERS) == 1
    return config if values.get("prompt", "").strip('"') == BASE_PROMPT and made_by else None


def _pyvenv_lines(path: Path) -> list[tuple[str, str]] | None:
    """``pyvenv.cfg``'s ``key = value`` lines in their order; None when unreadable or not all such lines."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    pairs = [tuple(part.strip() for part in line.split("=", 1)) for line in text.splitlines() if line.strip()]
    return [(pair[0], pair[1]) for pair in pairs] if all(len(pair) == 2 for pair in pairs) else None


def _replacer(values: dict[str, str]) -> Callable[[bytes], bytes]:
    """One pass over the text, longest key first, so a key inside another's value is left as it is."""
    table = {os.fsencode(key): os.fsencode(value) for key, value in values.items()}
    pattern = re.compile(b"|".join(re.escape(key) for key in sorted(table, key=len, reverse=True)))
    return lambda data: pattern.sub(lambda match: table[match[0]], data)


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
