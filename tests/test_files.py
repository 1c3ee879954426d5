import stat

from slm4offer.files import write_text


def test_written_files_are_readable_by_everyone(tmp_path):
    path = write_text(tmp_path / "sub" / "table.csv", "a,b\n")
    assert path.read_text() == "a,b\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644 and not list(path.parent.glob(".*.tmp"))
