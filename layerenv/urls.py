"""Index URLs: templating, redaction of credentials, and a cheap reachability probe."""

from __future__ import annotations

import os
import re
import sys
import urllib.parse
from pathlib import Path

from layerenv.errors import BadInput


def redact(url: str) -> str:
    """``https://user:token@host/x`` -> ``https://***@host/x``: never print or store secrets."""
    return _replace_userinfo(url, "***@")


def _replace_userinfo(url: str, userinfo: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, f"{userinfo}{host}", parts.path, parts.query, parts.fragment))


_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^\s/@'\"]+@")


def redact_text(text: str) -> str:
    """Every URL in ``text`` (an argv, an installer's output) with its credentials replaced by ``***``."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


def without_credentials(url: str) -> str:
    """``https://user:token@host/x`` -> ``https://host/x``: what installers report as a source."""
    return _replace_userinfo(url, "")


def check_url(url: str, where: str, *, allow_paths: bool = False) -> str:
    """An index URL must be http(s) or file; find-links may also be a plain directory path."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme in ("http", "https", "file") or (allow_paths and not scheme and url.strip()):
        if any(character in url for character in "\n\r\0"):
            raise BadInput(f"{where}: {redact(url)!r} contains a control character")
        return url
    allowed = "https://, http://, file:// or a directory" if allow_paths else "https://, http:// or file://"
    raise BadInput(f"{where}: {redact(url)!r} must start with {allowed}")


def fill_template(template: str, variant: str, where: str) -> str:
    if "{" in template.replace("{variant}", ""):
        raise BadInput(f"{where}: index URL {redact(template)!r} may only contain the placeholder {{variant}}")
    return check_url(template.replace("{variant}", variant), where)


def file_url_path(path: str) -> str:
    """The local path a ``file:`` URL's path part names, as :func:`urllib.request.url2pathname` reads it
    (Python 3.14's: escaped bytes that are not UTF-8 stay the bytes of the name), without importing
    :mod:`urllib.request` on POSIX: its HTTP and e-mail modules are ~20 ms of CPU of a base build whose index
    is a directory (once the store has its venv shape: virtualenv, making one, imports them anyway)."""
    if os.name == "nt":  # drive letters and UNC hosts: urllib's own reading
        from urllib.request import url2pathname

        return url2pathname(path)
    return urllib.parse.unquote(path, encoding=sys.getfilesystemencoding(), errors=sys.getfilesystemencodeerrors())


def unreachable_reason(url: str, timeout: float = 5.0) -> str | None:
    """``None`` when the index answers (any HTTP status), else why not, in a few words."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        path = Path(file_url_path(parts.path))
        return None if path.is_dir() else f"{path} is not a directory"
    from urllib.error import HTTPError, URLError
    from urllib.request import Request, urlopen

    headers = {}
    if parts.username is not None:  # urllib does not take credentials from the URL: send them as Basic auth
        import base64

        pair = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    request = Request(url, method="GET", headers=headers)  # noqa: S310 - scheme checked above
    try:
        with urlopen(request, timeout=timeout) as response:  # noqa: S310
            response.read(1)
    except HTTPError:
        return None
    except (URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return str(reason)
    return None
