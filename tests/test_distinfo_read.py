"""Reading a dist-info: METADATA's bytes kept as they are (a stub copies them), its text as read_text reads
it (universal newlines), and what only some callers need read only when asked."""

from __future__ import annotations

from pathlib import Path

from layerenv.venv.distinfo import read_distributions


def test_crlf_metadata_reads_as_text_with_its_bytes_kept(tmp_path: Path) -> None:
    folder = tmp_path / "demo-1.0.dist-info"
    folder.mkdir()
    raw = b"Metadata-Version: 2.1\r\nName: Demo\r\nVersion: 1.0\r\n\r\nA description\rwith an old Mac line end\r\n"
    (folder / "METADATA").write_bytes(raw)
    (folder / "RECORD").write_text("demo/__init__.py,,\n")
    (folder / "entry_points.txt").write_text("[console_scripts]\ndemo = demo.cli:main\n")

    [dist] = read_distributions(tmp_path)

    assert (dist.name, dist.version, dist.installer) == ("demo", "1.0", "")
    assert dist.metadata_bytes == raw
    assert "\r" not in dist.metadata_text and dist.metadata_text.endswith("with an old Mac line end\n")
    assert dist.console_scripts == (("demo", "demo.cli:main"),)
    assert len(dist.record_sha256) == 64


def _reference_headers(text: str, keys: tuple[str, ...]) -> dict[str, str]:
    """The definition: the first value of each key among the lines before the first blank one."""
    found: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, colon, value = line.partition(":")
        if colon and key.strip().lower() in keys and key.strip().lower() not in found:
            found[key.strip().lower()] = value.strip()
    return found


def test_headers_stop_early_with_the_same_answer() -> None:
    import random

    from layerenv.venv.distinfo import _headers

    lines = ("Name: a", "Version: 1", "name: b", "VERSION : 2", "Requires-Dist: x", "Summary: s", "", "Name: late",
             "no colon", " Version: 3")
    generator = random.Random(3)
    for _ in range(3000):
        text = "\n".join(generator.choice(lines) for _ in range(generator.randint(0, 9)))
        assert _headers(text, ("name", "version")) == _reference_headers(text, ("name", "version")), repr(text)
