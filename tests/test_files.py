import stat

from slm4offer.files import write_text


def test_written_files_are_readable_by_everyone(tmp_path):
    path = write_text(tmp_path / "sub" / "table.csv", "a,b\n")
    assert path.read_text() == "a,b\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644 and not list(path.parent.glob(".*.tmp"))


def test_a_temp_folder_left_by_a_killed_run_is_removed_by_the_next_write(tmp_path):
    from slm4offer.files import atomic_dir

    stale = tmp_path / ".model.abc123.tmp"
    stale.mkdir()
    (stale / "half.bin").write_text("x")
    other = tmp_path / ".model-2.abc123.tmp"  # another target's: not ours to remove
    other.mkdir()
    with atomic_dir(tmp_path / "model") as tmp:
        (tmp / "weights").write_text("w")
    assert (tmp_path / "model" / "weights").read_text() == "w"
    assert not stale.exists() and other.exists()


def _write_slowly(path, label, log):
    import time

    from slm4offer.files import atomic_dir

    with atomic_dir(path) as tmp:
        log.put(("start", label, time.monotonic()))
        (tmp / "who").write_text(label)
        time.sleep(0.4)
        log.put(("end", label, time.monotonic()))


def test_two_processes_writing_one_folder_take_turns(tmp_path):
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    log = ctx.Queue()
    workers = [ctx.Process(target=_write_slowly, args=(tmp_path / "out", name, log)) for name in ("a", "b")]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert all(w.exitcode == 0 for w in workers)
    events = sorted((log.get(timeout=5) for _ in range(4)), key=lambda e: e[2])
    assert [e[0] for e in events] == ["start", "end", "start", "end"], "one writer at a time"
    assert (tmp_path / "out" / "who").read_text() == events[-1][1]
    assert not list(tmp_path.glob(".out.*.tmp"))


def test_a_folder_the_project_did_not_write_is_never_replaced(tmp_path):
    import pytest

    from slm4offer.files import replaceable_folder

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(ValueError, match="holds files slm4offer did not write"):
        replaceable_folder(mine, ("dataset_dict.json",))
    assert (mine / "thesis.tex").read_text() == "years of work"
    (tmp_path / "file.csv").write_text("a")
    with pytest.raises(ValueError, match="is a file"):
        replaceable_folder(tmp_path / "file.csv", ("dataset_dict.json",))
    (tmp_path / "empty").mkdir()
    assert replaceable_folder(tmp_path / "empty", ("x",)) == tmp_path / "empty"
    assert replaceable_folder(tmp_path / "new", ("x",)) == tmp_path / "new"
