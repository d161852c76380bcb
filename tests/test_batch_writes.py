"""``store.atomic.Batch``: replacements written beside their places, put in place later in order."""

from __future__ import annotations

from pathlib import Path

from layerenv.store.atomic import STAGED_PREFIX, Batch, flush


def test_nothing_changes_in_place_until_apply_and_then_in_the_order_asked(tmp_path: Path) -> None:
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text("old 1\n")
    seen: list[str] = []
    batch = Batch()
    assert batch.update_text(first, "new 1\n")
    batch.then(lambda: seen.append(f"{first.read_text()}{second.exists()}"))  # after first's, before second's
    batch.write_text(second, "new 2\n", durable=False)
    batch.then(lambda: seen.append(second.read_text()))
    assert not batch.update_text(first, "old 1\n", mode=first.stat().st_mode & 0o777)  # already holds it

    assert first.read_text() == "old 1\n" and not second.exists()
    assert len(batch.durable) == 1 and batch.durable[0].name.startswith(f"{STAGED_PREFIX}first.txt.")
    flush(batch.durable)
    batch.apply()

    assert (first.read_text(), second.read_text()) == ("new 1\n", "new 2\n")
    assert seen == ["new 1\nFalse", "new 2\n"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["first.txt", "second.txt"]


def test_discard_removes_what_was_staged_and_leaves_the_files_in_place(tmp_path: Path) -> None:
    kept = tmp_path / "kept.json"
    kept.write_text("{}\n")
    scratch = tmp_path / f"{STAGED_PREFIX}new-thing"
    scratch.mkdir()
    (scratch / "RECORD").write_text("x\n")
    batch = Batch()
    batch.write_text(kept, '{"moved": true}\n')
    batch.scratch(scratch)
    batch.then(lambda: scratch.rename(tmp_path / "thing"))

    batch.discard()
    batch.apply()  # nothing left to do

    assert kept.read_text() == "{}\n"
    assert [path.name for path in tmp_path.iterdir()] == ["kept.json"]


def test_a_failing_step_leaves_the_steps_before_it_done_and_no_temporaries(tmp_path: Path) -> None:
    done, never = tmp_path / "done.txt", tmp_path / "never.txt"
    batch = Batch()
    batch.write_text(done, "a\n")
    batch.then(lambda: (tmp_path / "missing" / "x").rename(tmp_path / "y"))  # raises FileNotFoundError
    batch.write_text(never, "b\n")

    try:
        batch.apply()
    except FileNotFoundError:
        pass
    else:
        raise AssertionError("the failing step did not raise")

    assert done.read_text() == "a\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["done.txt"]


def test_flush_syncs_many_at_once_and_raises_the_first_failure_in_order(tmp_path: Path) -> None:
    files = [tmp_path / f"file-{number}" for number in range(40)]
    for path in files:
        path.write_text("x")
    flush([*files, tmp_path])  # more paths than threads: every one synced without error
    flush([])
    gone = [tmp_path / "gone-1", tmp_path / "gone-2"]
    try:
        flush([*files[:20], gone[0], *files[20:], gone[1]])
    except FileNotFoundError as error:
        assert error.filename == str(gone[0])
    else:
        raise AssertionError("a path that cannot be synced must fail the flush")
