"""Local package indexes for tests: PEP 503 simple indexes on disk and over HTTP.

Layout written by :func:`write_simple_index` under ``root``::

    root/files/<wheel>                       the wheels
    root/files/<wheel>.metadata              PEP 658 core metadata of each wheel
    root/simple/index.html                   project list
    root/simple/<normalized-name>/index.html links ``../../files/<wheel>#sha256=...``

Both installers take it as ``file://`` index and over HTTP:

* ``pip install --index-url file:///.../root/simple`` works: pip reads the
  ``index.html`` of a ``file://`` directory URL.
* ``uv pip install --index-url file:///.../root/simple`` works too (uv 0.13 also
  reads ``<dir>/index.html`` for a ``file://`` index URL).
* :func:`serve_index` serves the same tree on ``http://127.0.0.1:<port>``; a
  directory URL without trailing slash is redirected (301) to the one with it,
  as PyPI does, so the relative links resolve correctly for pip and uv alike.

Links carry ``data-dist-info-metadata``/``data-core-metadata`` (PEP 658/714), as
the real PyTorch index does, so resolvers read the small ``.metadata`` file and
download each wheel only once, to install it.

Several indexes can live side by side under one served root, e.g.
``root/cu128/simple`` and ``root/cpu/simple``: serve ``root`` and use
``http://127.0.0.1:<port>/{variant}/simple``.

Installers must not see this machine's pip/uv configuration (a global pip.conf
adds find-links, extra indexes and constraints): run them with
:func:`isolated_installer_env`.  ``PIP_CONFIG_FILE=/dev/null`` makes pip skip
*all* its config files (global, user, site), checked with pip 23.2.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import http.server
import os
import shutil
import threading
import urllib.parse
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .wheels import normalize_name, parse_wheel_filename

__all__ = [
    "IndexServer",
    "add_to_index",
    "file_url",
    "isolated_installer_env",
    "serve_index",
    "write_find_links_dir",
    "write_simple_index",
]

_METADATA_SUFFIX = ".metadata"


def file_url(path: Path) -> str:
    """``file://`` URL of a local path (absolute, no trailing slash)."""
    return Path(path).resolve().as_uri()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _wheel_metadata(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if name.count("/") == 1 and name.endswith(".dist-info/METADATA"):
                return archive.read(name)
    raise ValueError(f"{wheel} has no .dist-info/METADATA")


def _project_of(filename: str) -> str:
    return normalize_name(parse_wheel_filename(filename)[0])


def _page(title: str, links: Iterable[str]) -> str:
    body = "\n".join(f"    {link}<br/>" for link in links)
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        '    <meta name="pypi:repository-version" content="1.0">\n'
        f"    <title>{html.escape(title)}</title>\n  </head>\n  <body>\n"
        f"    <h1>{html.escape(title)}</h1>\n{body}\n  </body>\n</html>\n"
    )


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _copy_in(files_dir: Path, wheels: Iterable[Path]) -> None:
    files_dir.mkdir(parents=True, exist_ok=True)
    for item in wheels:
        wheel = Path(item)
        parse_wheel_filename(wheel.name)  # reject non-wheels early
        target = files_dir / wheel.name
        if wheel.resolve() != target.resolve():
            shutil.copyfile(wheel, target)
        (files_dir / (wheel.name + _METADATA_SUFFIX)).write_bytes(_wheel_metadata(target))


def _regenerate(root: Path) -> Path:
    files_dir = root / "files"
    simple = root / "simple"
    projects: dict[str, list[Path]] = {}
    for wheel in sorted(files_dir.glob("*.whl")):
        projects.setdefault(_project_of(wheel.name), []).append(wheel)
    for project, wheels in projects.items():
        links = []
        for wheel in wheels:
            meta = files_dir / (wheel.name + _METADATA_SUFFIX)
            meta_attr = f"sha256={_sha256_file(meta)}"
            href = f"../../files/{urllib.parse.quote(wheel.name)}#sha256={_sha256_file(wheel)}"
            links.append(
                f'<a href="{html.escape(href)}" data-dist-info-metadata="{meta_attr}"'
                f' data-core-metadata="{meta_attr}">{html.escape(wheel.name)}</a>'
            )
        _write_text(simple / project / "index.html", _page(f"Links for {project}", links))
    root_links = [f'<a href="{urllib.parse.quote(p)}/">{html.escape(p)}</a>' for p in sorted(projects)]
    _write_text(simple / "index.html", _page("Simple index", root_links))
    return simple


def write_simple_index(root: Path, wheels: Iterable[Path]) -> Path:
    """Copy ``wheels`` to ``root/files`` and write a PEP 503 index; return ``root/simple``.

    Wheels already in ``root/files`` stay listed.  Use ``file_url(result)`` as
    ``--index-url`` for pip or uv.
    """
    root = Path(root)
    _copy_in(root / "files", wheels)
    return _regenerate(root)


def add_to_index(root: Path, wheels: Iterable[Path]) -> Path:
    """Add wheels to an index made by :func:`write_simple_index`; return ``root/simple``.

    Safe while the index is being served (pages are replaced atomically).
    """
    return write_simple_index(root, wheels)


def write_find_links_dir(root: Path, wheels: Iterable[Path]) -> Path:
    """Copy ``wheels`` into the flat directory ``root`` (for ``--find-links``); return it."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for item in wheels:
        wheel = Path(item)
        target = root / wheel.name
        if wheel.resolve() != target.resolve():
            shutil.copyfile(wheel, target)
    return root


# --------------------------------------------------------------------------- HTTP


@dataclass
class IndexServer:
    """A running loopback server over an index tree (see :func:`serve_index`).

    ``downloads`` maps a file name (``torch-2.9.1+cu128-py3-none-any.whl``, or
    ``<wheel>.metadata`` for PEP 658 metadata) to its number of GET requests;
    ``requests`` lists every request path in order (unquoted; GETs as plain
    paths, other methods as ``"HEAD /path"``).  Read them under ``lock`` or via
    :meth:`download_count` / :meth:`wheel_downloads` while installers run.
    """

    root: Path
    base_url: str
    downloads: dict[str, int] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT/simple`` (the index of a tree made by write_simple_index)."""
        return f"{self.base_url}/simple"

    def url_for(self, relative: str) -> str:
        """URL of a path below the served root, e.g. ``url_for("cu128/simple")``."""
        return f"{self.base_url}/{relative.strip('/')}"

    def download_count(self, filename: str) -> int:
        """How many times ``filename`` was fetched with GET."""
        with self.lock:
            return self.downloads.get(filename, 0)

    def wheel_downloads(self) -> dict[str, int]:
        """Snapshot of the GET counts of ``.whl`` files only."""
        with self.lock:
            return {k: v for k, v in self.downloads.items() if k.endswith(".whl")}

    def reset(self) -> None:
        """Forget the counted downloads and requests."""
        with self.lock:
            self.downloads.clear()
            self.requests.clear()

    def _record(self, method: str, path: str) -> None:
        clean = urllib.parse.unquote(urllib.parse.urlsplit(path).path)
        with self.lock:
            self.requests.append(clean if method == "GET" else f"{method} {clean}")
            if method == "GET" and not clean.endswith("/"):
                name = clean.rsplit("/", 1)[-1]
                if name.endswith((".whl", _METADATA_SUFFIX, ".tar.gz", ".zip")):
                    self.downloads[name] = self.downloads.get(name, 0) + 1


class _Handler(http.server.SimpleHTTPRequestHandler):
    index_server: IndexServer  # set on the per-server subclass

    extensions_map = {  # noqa: RUF012 - overriding the base class mapping
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".html": "text/html; charset=utf-8",
        ".whl": "application/octet-stream",
        ".metadata": "text/plain; charset=utf-8",
    }

    def do_GET(self) -> None:
        self.index_server._record("GET", self.path)
        super().do_GET()

    def do_HEAD(self) -> None:
        self.index_server._record("HEAD", self.path)
        super().do_HEAD()

    def list_directory(self, path: str | os.PathLike[str]) -> Any:
        # No directory listings: a directory without index.html is a 404, like a real index.
        self.send_error(404, "Not Found")
        return None

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Installers drop connections early (e.g. after reading headers): stay quiet.
        pass


@contextlib.contextmanager
def serve_index(root: Path) -> Iterator[IndexServer]:
    """Serve ``root`` on ``http://127.0.0.1:<free port>`` in a background thread.

    ``root`` may be a tree made by :func:`write_simple_index` (then use
    ``server.url``) or a directory holding several such trees (then use
    ``server.url_for("<name>/simple")``).  Stops when the block exits.
    """
    root = Path(root).resolve()

    class _BoundHandler(_Handler):
        pass

    def make_handler(*args: Any) -> _Handler:
        return _BoundHandler(*args, directory=str(root))

    server = _Server(("127.0.0.1", 0), make_handler)
    port = server.server_address[1]
    state = IndexServer(root=root, base_url=f"http://127.0.0.1:{port}")
    _BoundHandler.index_server = state
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name=f"index-server-{port}",
        daemon=True,
    )
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------- environment


def isolated_installer_env(
    base_env: Mapping[str, str] | None = None,
    *,
    uv_cache_dir: Path | None = None,
) -> dict[str, str]:
    """Environment for running pip/uv without this machine's configuration.

    Drops every ``PIP_*`` and ``UV_*`` variable, then sets
    ``PIP_CONFIG_FILE=/dev/null`` (pip loads no config file at all),
    ``PIP_NO_INPUT=1``, ``PIP_DISABLE_PIP_VERSION_CHECK=1``, ``UV_NO_CONFIG=1``
    and ``UV_PYTHON_DOWNLOADS=never``.  uv keeps its default cache unless
    ``uv_cache_dir`` is given (pass a tmp dir, or ``--no-cache``, when counting
    downloads: uv's cache is keyed by URL and a reused port could hit it).
    """
    env = {
        key: value
        for key, value in (os.environ if base_env is None else base_env).items()
        if not key.startswith(("PIP_", "UV_"))
    }
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_INPUT="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        UV_NO_CONFIG="1",
        UV_PYTHON_DOWNLOADS="never",
    )
    if uv_cache_dir is not None:
        env["UV_CACHE_DIR"] = str(uv_cache_dir)
    return env
