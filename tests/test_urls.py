"""The index probe of a ``file:`` URL: read as urllib reads it, without urllib's HTTP machinery."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

from layerenv.urls import file_url_path, unreachable_reason


def test_a_file_index_is_found_through_its_escapes_and_a_missing_one_is_named(tmp_path: Path) -> None:
    index = tmp_path / "an index é" / "cu128"
    index.mkdir(parents=True)
    url = index.as_uri()
    assert "%20" in url and "%C3%A9" in url
    assert unreachable_reason(url) is None
    assert unreachable_reason(url + "-gone") == f"{index}-gone is not a directory"
    (tmp_path / "plain-file").write_text("", encoding="utf-8")
    assert unreachable_reason((tmp_path / "plain-file").as_uri()) == f"{tmp_path / 'plain-file'} is not a directory"


def test_the_path_of_a_file_url_is_what_url2pathname_reads() -> None:
    for path in ("/srv/wheels/cu128/simple", "/a%20b/c%2Bd", "/%C3%A9t%C3%A9/x", "//host/share/x"):
        assert file_url_path(path) == urllib.request.url2pathname(path), path


def test_probing_a_file_index_imports_no_http_client(tmp_path: Path) -> None:
    code = ("import sys; from layerenv.urls import unreachable_reason; "
            f"assert unreachable_reason({tmp_path.as_uri()!r}) is None; "
            "print(sorted({'urllib.request', 'http.client'} & set(sys.modules)))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]", found.stdout + found.stderr
