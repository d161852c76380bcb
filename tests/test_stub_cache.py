"""The base's distributions and stub files kept in the store once per base (layerenv.project.stub_cache):
taken again only while every file they came from is unchanged, and then the same as reading the base."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from layerenv.project import stub_cache, stubs

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no cache on Windows (no inode and ctime to rest on)")

BASE_ID = "cp311-linux_x86_64-torch2.13.0-cpu-adopted"
LATER = 10**19  # a reading that began long after every file was written: the settle rule lets it be kept


def dist_info(site: Path, name: str, version: str, *, installer: str = "uv", scripts: bool = False) -> Path:
    folder = site / f"{name}-{version}.dist-info"
    folder.mkdir()
    (folder / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nabout {name}\n")
    (folder / "INSTALLER").write_text(f"{installer}\n")
    (folder / "WHEEL").write_text("Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    if scripts:
        (folder / "entry_points.txt").write_text(f"[console_scripts]\n{name} = {name}.cli:main\n")
    return folder


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = tmp_path / "base" / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    dist_info(site, "numpy", "2.1.0", scripts=True)
    dist_info(site, "filelock", "3.16.1")
    dist_info(site, "pip", "24.3")  # not stubbed: the project has its own
    return site


@pytest.fixture(autouse=True)
def fresh_process() -> Iterator[None]:
    """Each reading starts as a new process would: nothing read yet."""
    stubs._STUBS.clear()
    stubs._BASE_CACHE.clear()
    yield
    stubs._STUBS.clear()
    stubs._BASE_CACHE.clear()


def read(site: Path) -> tuple[list[tuple[str, str, str, str, bytes, str]], list[dict[str, bytes]]]:
    """What a project's link takes from the base: its distributions, and each one's stub files."""
    dists = stubs.base_distributions(site)
    described = [(d.name, d.version, str(d.dist_info), d.metadata_text, d.metadata_bytes, d.installer) for d in dists]
    return described, [stubs._stub_files(d, BASE_ID, ()) for d in dists]


def kept(tmp_path: Path, site: Path) -> Path:
    """The base read and its stubs made (as a first project does), then kept; the cache file."""
    path = stub_cache.cache_file(tmp_path / "home", site, BASE_ID)
    first = read(site)
    assert stub_cache.keep(path, site, BASE_ID, LATER)
    stubs._STUBS.clear()
    stubs._BASE_CACHE.clear()
    assert read(site) == first  # the reading itself is what the cache must give again
    stubs._STUBS.clear()
    stubs._BASE_CACHE.clear()
    return path


def test_a_kept_base_is_taken_and_gives_what_reading_it_gives(tmp_path: Path, site: Path) -> None:
    path = kept(tmp_path, site)
    fresh = read(site)
    stubs._STUBS.clear()
    stubs._BASE_CACHE.clear()

    assert stub_cache.recall(path, site, BASE_ID)
    assert [d.name for d in stubs.base_distributions(site)] == ["filelock", "numpy"]
    assert read(site) == fresh
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def _rewrite(name: str) -> Callable[[Path], None]:
    def change(site: Path) -> None:
        target = site / "numpy-2.1.0.dist-info" / name
        target.write_text(target.read_text().replace("numpy", "numpy ") if name != "INSTALLER" else "layerenv\n")
    return change


CHANGES: dict[str, Callable[[Path], None]] = {
    "METADATA rewritten in place": _rewrite("METADATA"),
    "INSTALLER rewritten in place (now a stub's)": _rewrite("INSTALLER"),
    "WHEEL rewritten in place": _rewrite("WHEEL"),
    "entry points rewritten in place": _rewrite("entry_points.txt"),
    "entry points added": lambda site: (site / "filelock-3.16.1.dist-info" / "entry_points.txt").write_text(
        "[console_scripts]\nfilelock = filelock:main\n"),
    "a distribution installed": lambda site: dist_info(site, "six", "1.16.0"),
    "a distribution removed": lambda site: [path.unlink() for path in (site / "filelock-3.16.1.dist-info").iterdir()]
    and (site / "filelock-3.16.1.dist-info").rmdir(),
    "a distribution upgraded": lambda site: (site / "filelock-3.16.1.dist-info").rename(site / "filelock-3.17.0.dist-info"),
    "a virtualenv seed marker added": lambda site: (site / "numpy-2.1.0.virtualenv").write_text(""),
    "a file renamed in a dist-info": lambda site: (site / "numpy-2.1.0.dist-info" / "WHEEL").rename(
        site / "numpy-2.1.0.dist-info" / "WHEEL.old"),
}


@pytest.mark.parametrize("change", CHANGES)
def test_any_change_to_what_the_base_reading_rests_on_reads_the_base_again(tmp_path: Path, site: Path,
                                                                            change: str) -> None:
    path = kept(tmp_path, site)
    CHANGES[change](site)
    assert not stub_cache.recall(path, site, BASE_ID)
    assert stubs._BASE_CACHE == {} and stubs._STUBS == {}  # nothing taken: the link reads the base itself


def test_an_edit_of_the_code_that_shapes_a_stub_reads_the_base_again(tmp_path: Path, site: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    module = tmp_path / "stubs.py"
    module.write_text("# stands in for layerenv/project/stubs.py\n")
    monkeypatch.setattr(stub_cache, "_code", lambda: [str(module)])
    path = kept(tmp_path, site)
    assert stub_cache.recall(path, site, BASE_ID)
    stubs._STUBS.clear()
    stubs._BASE_CACHE.clear()
    module.write_text("# edited\n")
    assert not stub_cache.recall(path, site, BASE_ID)


def test_another_base_or_site_is_not_given_this_ones_stubs(tmp_path: Path, site: Path) -> None:
    path = kept(tmp_path, site)
    other = tmp_path / "other-site"
    site.rename(other)
    site.mkdir()
    assert not stub_cache.recall(path, other, BASE_ID)  # the file names its site
    assert not stub_cache.recall(path, site, "another-base")
    assert stub_cache.cache_file(tmp_path, site, BASE_ID) != stub_cache.cache_file(tmp_path, site, "another-base")


def test_nothing_is_kept_that_changed_within_the_settle_time_of_the_reading(tmp_path: Path, site: Path) -> None:
    path = stub_cache.cache_file(tmp_path / "home", site, BASE_ID)
    read(site)
    newest = max(os.stat(p).st_ctime_ns for p in [site, *site.rglob("*")])
    assert not stub_cache.keep(path, site, BASE_ID, newest + stub_cache.SETTLE_NS)  # changed 2 s before: unsure
    assert not path.exists()
    assert stub_cache.keep(path, site, BASE_ID, newest + stub_cache.SETTLE_NS + 1)


def test_a_cache_file_others_could_write_or_that_does_not_parse_is_not_taken(tmp_path: Path, site: Path) -> None:
    path = kept(tmp_path, site)
    path.chmod(0o620)
    assert not stub_cache.recall(path, site, BASE_ID)
    path.chmod(0o600)
    path.parent.chmod(0o775)
    assert not stub_cache.recall(path, site, BASE_ID)
    path.parent.chmod(0o755)
    assert stub_cache.recall(path, site, BASE_ID)
    stubs._STUBS.clear()
    stubs._BASE_CACHE.clear()
    path.write_bytes(path.read_bytes()[:-100])
    assert not stub_cache.recall(path, site, BASE_ID)
    path.write_bytes(b"\x00not marshal")
    assert not stub_cache.recall(path, site, BASE_ID)


def test_only_the_newest_cache_files_are_kept(tmp_path: Path, site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stub_cache, "KEEP", 2)
    read(site)
    paths = [stub_cache.cache_file(tmp_path / "home", site, f"base-{number}") for number in range(3)]
    for number, path in enumerate(paths):
        assert stub_cache.keep(path, site, f"base-{number}", LATER)
        os.utime(path, ns=(number * 10**9, number * 10**9))  # the first is the oldest
    assert [path.exists() for path in paths] == [False, True, True]
