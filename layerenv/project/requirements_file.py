"""Requirements files as pip reads them, parsed into typed lines (no installer, no network).

``-r``/``-c`` name files relative to the file that includes them; ``-e PATH``, local paths and
``--find-links`` directories are relative to the project directory, as they are for pip run there
(a find-links directory next to the file wins, as in pip). ``--hash`` options, markers, URLs and VCS
requirements are kept as written; index options apply to the project's packages, except an index
that only serves the torch family (download.pytorch.org), which the base already covers.

Every requirements file, named or included, must be inside the project once links are resolved: a
repository cannot make layerenv read ``/proc/self/environ`` or ``~/.netrc`` as requirements (pip
would send each line to an index as a package name). An error names the file and line and the
reason, never the line's text: ``${VARIABLE}`` expands into it, and a file that is not a
requirements file may hold secrets.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from layerenv.errors import BadInput

Kind = Literal["requirement", "constraint", "editable"]

#: Options taking a value that pip accepts on their own line of a requirements file.
_INDEX_OPTIONS = {
    "-i": "index_url", "--index-url": "index_url",
    "--extra-index-url": "extra_index_urls",
    "-f": "find_links", "--find-links": "find_links",
    "--trusted-host": "trusted_hosts",
    "--only-binary": "passthrough", "--no-binary": "passthrough",
}
_FLAGS = {"--no-index", "--pre", "--prefer-binary", "--require-hashes"}
_FILE_OPTIONS: dict[str, Kind] = {
    "-r": "requirement", "--requirement": "requirement", "-c": "constraint", "--constraint": "constraint",
}
_ALLOWED = "-r, -c, -e, -i/--index-url, --extra-index-url, -f/--find-links, --no-index, --trusted-host, " \
           "--pre, --prefer-binary, --only-binary, --no-binary, --require-hashes, and --hash after a requirement"
# pip's own options, named in an error as they are; any other word of a file is never echoed: it may be
# an expanded ${VARIABLE}, or the content of a file that was never a requirements file
_PIP_OPTIONS = frozenset({
    "--use-feature", "--use-pep517", "--no-use-pep517", "--config-settings", "--global-option", "--install-option",
    "--no-deps", "--no-build-isolation", "--upgrade", "-U", "--user", "--target", "--prefix", "--root", "--src",
    "--no-cache-dir", "--constraint", "--requirement", "--editable", "--index-url", "--extra-index-url",
    "--find-links", "--hash", "--trusted-host", "--only-binary", "--no-binary", "--prefer-binary", "--pre",
    "--no-index", "--require-hashes", "--progress-bar", "--isolated", "--exists-action",
})
_COMMENT = re.compile(r"(^|\s+)#.*$")
_ENV_VAR = re.compile(r"\$\{([A-Z0-9_]+)\}")
_EGG = re.compile(r"[#&]egg=([A-Za-z0-9][A-Za-z0-9._-]*)")
_TORCH_INDEX_HOSTS = ("download.pytorch.org",)


@dataclass(frozen=True)
class Line:
    """One requirement, constraint or editable of a requirements file, where it was written."""

    kind: Kind
    text: str  # as pip takes it: a PEP 508 requirement, a URL, or an absolute path (editables, paths)
    name: str | None  # PEP 503 name when the line tells it (a URL needs ``#egg=`` or a wheel name)
    where: str  # "requirements.txt:3"
    hashes: tuple[str, ...] = ()
    marker_applies: bool = True


@dataclass(frozen=True)
class IndexOptions:
    """Where the project's packages come from, as the files say (empty: the installer's own config)."""

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    trusted_hosts: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()  # --no-index, --pre, --prefer-binary, "--only-binary X", ...

    def lines(self) -> list[str]:
        out = [f"--index-url {self.index_url}"] if self.index_url else []
        out += [f"--extra-index-url {url}" for url in self.extra_index_urls]
        out += [f"--find-links {link}" for link in self.find_links]
        out += [f"--trusted-host {host}" for host in self.trusted_hosts]
        return out + list(self.flags)


@dataclass(frozen=True)
class RequirementsFiles:
    """What one or more requirements files ask for, every included file read once."""

    lines: tuple[Line, ...]
    files: tuple[Path, ...]
    index: IndexOptions = field(default_factory=IndexOptions)
    family_indexes: tuple[tuple[str, str], ...] = ()  # (url, where): torch-family indexes, not used

    @property
    def hashed(self) -> bool:
        return any(line.hashes for line in self.lines) or "--require-hashes" in self.index.flags


def is_torch_index(url: str) -> bool:
    """An index or find-links page that only serves the torch family (the base brings it)."""
    return (urlsplit(url).hostname or "").lower() in _TORCH_INDEX_HOSTS


def _label(path: Path, project_dir: Path) -> str:
    return str(path.relative_to(project_dir)) if path.is_relative_to(project_dir) else str(path)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join ``\\`` continuations and drop comments; each line keeps the number it starts on."""
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        line = _COMMENT.sub("", raw)
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        joined = " ".join(part.strip() for part in pending).strip()
        pending = []
        if joined:
            out.append((start, joined))
    if pending and " ".join(part.strip() for part in pending).strip():
        out.append((start, "\\"))  # a continuation the file never ends: refused, as a truncated file
    return out


def _expand(text: str, env: Mapping[str, str]) -> str:
    return _ENV_VAR.sub(lambda m: env.get(m[1], m[0]), text)


def reason(error: Exception) -> str:
    """What packaging says is wrong with a requirement, without the text it quotes (its first line)."""
    return str(error).splitlines()[0] if str(error) else error.__class__.__name__


def _is_path_like(text: str) -> bool:
    return text.startswith((".", "/", "~")) or (text.endswith((".whl", ".tar.gz", ".zip")) and "://" not in text)


def _name_of_url(text: str) -> str | None:
    from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

    if egg := _EGG.search(text):
        return canonicalize_name(egg[1])
    tail = urlsplit(text).path.rsplit("/", 1)[-1]
    if tail.endswith(".whl"):
        try:
            return canonicalize_name(parse_wheel_filename(tail)[0])
        except InvalidWheelFilename:
            return None
    return None


def _requirement(text: str, where: str, project_dir: Path) -> tuple[str, str | None, bool]:
    """(text for the installer, name, marker applies) of one requirement line."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    if "://" in text.split(";", 1)[0].split(" @ ", 1)[0] and " @ " not in text:
        parts = urlsplit(text)
        if not (parts.netloc or parts.path.strip("/")) or " " in text.split(";", 1)[0].strip():
            raise BadInput(f"{where}: not a valid URL requirement")
        return text, _name_of_url(text), True  # a bare URL or VCS link, as pip accepts
    if _is_path_like(text):
        path = (project_dir / Path(text).expanduser()).resolve()
        if not path.exists():
            raise BadInput(f"{where}: the local path it names does not exist")
        return str(path), _name_of_url(path.name), True
    try:
        parsed = Requirement(text)
    except InvalidRequirement as error:
        raise BadInput(f"{where}: not a valid requirement ({reason(error)})") from None
    applies = parsed.marker is None or parsed.marker.evaluate({"extra": ""})
    return text, canonicalize_name(parsed.name), applies


def _editable(value: str, where: str, project_dir: Path) -> tuple[str, str | None]:
    if "://" in value or value.startswith(("git+", "hg+", "svn+", "bzr+")):
        return value, _name_of_url(value)
    path = (project_dir / Path(value).expanduser()).resolve()
    if not path.is_dir():
        raise BadInput(f"{where}: -e names a path that is not a directory")
    if not any((path / name).is_file() for name in ("pyproject.toml", "setup.py", "setup.cfg")):
        raise BadInput(f"{where}: -e names a directory with no pyproject.toml or setup.py to install")
    return str(path), None


class _Reader:
    def __init__(self, project_dir: Path, env: Mapping[str, str], read: Callable[[Path], str]) -> None:
        self.project_dir = project_dir
        self.env = env
        self.read = read
        self.lines: list[Line] = []
        self.files: list[Path] = []
        self.index: dict[str, list[str]] = {"index_url": [], "extra_index_urls": [], "find_links": [],
                                            "trusted_hosts": [], "passthrough": []}
        self.flags: list[str] = []
        self.family_indexes: list[tuple[str, str]] = []

    def file(self, path: Path, kind: Kind, stack: tuple[Path, ...], where: str) -> None:
        path = path.resolve()
        if path in stack:
            chain = " -> ".join(_label(p, self.project_dir) for p in (*stack[stack.index(path):], path))
            raise BadInput(f"{where}: including {_label(path, self.project_dir)} again makes a cycle ({chain})")
        if not path.is_relative_to(self.project_dir.resolve()):
            raise BadInput(f"{where}: it includes a file outside the project {self.project_dir} (or a link out of "
                           "it); requirements files must be inside the project")
        if not path.is_file():
            raise BadInput(f"{where}: the requirements file it includes does not exist")
        if path in self.files and kind == "requirement":
            return
        self.files.append(path)
        label = _label(path, self.project_dir)
        for number, text in _logical_lines(self.read(path)):
            self.line(_expand(text, self.env), kind, path, (*stack, path), f"{label}:{number}")

    def line(self, text: str, kind: Kind, path: Path, stack: tuple[Path, ...], where: str) -> None:
        if text == "\\":
            raise BadInput(f"{where}: the line ends with '\\' but the file ends there (is it cut short?)")
        if not text.startswith("-"):
            requirement, _, options = text.partition(" --")
            self.requirement(requirement.strip(), ("--" + options) if options else "", kind, where)
            return
        try:
            words = shlex.split(text)
        except ValueError as error:
            raise BadInput(f"{where}: cannot split the line into words ({error})") from None
        option, value = words[0], " ".join(words[1:])
        if "=" in option and option.startswith("--"):
            option, _, value = option.partition("=")
        elif len(option) > 2 and option[:2] in ("-r", "-c", "-e", "-i", "-f") and not option.startswith("--"):
            option, value = option[:2], option[2:]
        if option in _FILE_OPTIONS:
            if not value:
                raise BadInput(f"{where}: {option} needs a file name")
            nested: Kind = "constraint" if kind == "constraint" else _FILE_OPTIONS[option]
            self.file(path.parent / value, nested, stack, where)
        elif option in ("-e", "--editable"):
            editable, name = _editable(value, where, self.project_dir)
            self.lines.append(Line("editable", editable, name, where))
        elif option in _INDEX_OPTIONS:
            if not value:
                raise BadInput(f"{where}: {option} needs a value")
            slot = _INDEX_OPTIONS[option]
            if slot == "find_links" and "://" not in value and (path.parent / value).exists():
                value = str((path.parent / value).resolve())
            elif slot == "find_links" and "://" not in value:
                value = str((self.project_dir / value).resolve())
            if slot in ("index_url", "extra_index_urls", "find_links") and is_torch_index(value):
                self.family_indexes.append((value, where))
            elif slot == "passthrough":
                self.flags.append(f"{option} {value}")
            else:
                self.index[slot].append(value)
        elif option in _FLAGS and not value:
            self.flags.append(option)
        else:
            shown = repr(option) if option in _PIP_OPTIONS else "an option pip does not know"
            raise BadInput(f"{where}: {shown} is not supported in a requirements file here; allowed: {_ALLOWED}")

    def requirement(self, text: str, options: str, kind: Kind, where: str) -> None:
        hashes: list[str] = []
        words = shlex.split(options) if options else []
        for word in words:
            option, _, value = word.partition("=")
            if option != "--hash" or ":" not in value:
                shown = repr(option) if option in _PIP_OPTIONS else "an option"
                raise BadInput(f"{where}: {shown} after a requirement is not supported; only --hash=ALGO:DIGEST")
            hashes.append(value)
        final, name, applies = _requirement(text, where, self.project_dir)
        self.lines.append(Line(kind, final, name, where, tuple(hashes), applies))

    def result(self) -> RequirementsFiles:
        urls = self.index["index_url"]
        return RequirementsFiles(
            lines=tuple(self.lines),
            files=tuple(self.files),
            index=IndexOptions(
                index_url=urls[-1] if urls else None,
                extra_index_urls=tuple(dict.fromkeys(self.index["extra_index_urls"])),
                find_links=tuple(dict.fromkeys(self.index["find_links"])),
                trusted_hosts=tuple(dict.fromkeys(self.index["trusted_hosts"])),
                flags=tuple(dict.fromkeys([*self.flags, *self.index["passthrough"]])),
            ),
            family_indexes=tuple(self.family_indexes),
        )


def read_requirements_files(
    paths: list[Path],
    project_dir: Path,
    env: Mapping[str, str],
    read: Callable[[Path], str] | None = None,
) -> RequirementsFiles:
    """Parse ``paths`` (and every file they include) as pip would; nothing is installed or fetched."""
    from layerenv.config import read_user_text

    reader = _Reader(project_dir, env, read or read_user_text)
    for path in paths:
        reader.file(path, "requirement", (), _label(path, project_dir))
    return reader.result()
