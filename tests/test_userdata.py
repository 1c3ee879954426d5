import json
from pathlib import Path

import pytest

from slm4offer.cli import main
from slm4offer.data.userdata import DataValidationError, DataValidationErrors, build_user_dataset, load_user_data

EXAMPLES = Path(__file__).parents[1] / "examples" / "user_data"
HEADER = "persona_id,persona,offer_id,accepted\n"


@pytest.fixture
def offers(tmp_path):
    path = tmp_path / "offers.csv"
    path.write_text("offer_id,offer\no1,Offer one\no2,Offer two\n")
    return path


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_shipped_examples_are_valid():
    user = load_user_data(EXAMPLES / "interactions.csv", EXAMPLES / "offers.csv")
    assert len(user.rows) == 12 and len(user.catalog) == 4 and user.dropped_ids == ["c013"]
    c004 = next(r for r in user.rows if r["persona_id"] == "c004")
    assert c004["accepted_offer_ids"] == ["travel_email"] and c004["age"] == "41"


def test_the_out_command_that_help_prints_works_on_the_shipped_template(tmp_path, monkeypatch, capsys):
    from slm4offer.cli import EPILOG

    line = next(x for x in EPILOG.splitlines() if "validate-data examples/user_data" in x)
    args = line.split()[1:]
    assert args[args.index("--out") + 1] == "my_dataset"
    monkeypatch.chdir(tmp_path)  # --out is relative to the working folder, like every path the CLI takes
    args = [str(EXAMPLES.parent.parent / a) if a.startswith("examples/") else a for a in args]
    assert main(args) == 0
    assert (tmp_path / "my_dataset" / "dataset_dict.json").is_file()
    assert "1 customer(s) dropped (accepted nothing: c013)" in capsys.readouterr().out


@pytest.mark.parametrize("name, text, line, field, message", [
    ("missing.csv", "persona_id,persona,offer_id\np1,x,o1\n", 1, "accepted", "missing column"),
    ("empty.csv", "", None, None, "file is empty"),
    ("header_only.csv", HEADER, None, None, "header but no rows"),
    ("unknown.csv", HEADER + "p1,x,o1,1\np1,x,o9,0\n", 3, "offer_id", "unknown offer id 'o9'"),
    ("nan.csv", HEADER + "p1,x,o1,1\np2,NaN,o1,1\n", 3, "persona", "empty or NaN"),
    ("blank.csv", HEADER + "p1,,o1,1\n", 2, "persona", "empty or NaN"),
    ("wrong_type.csv", HEADER + "p1,x,o1,maybe\n", 2, "accepted", "'maybe' is not an outcome: use 1 / true"),
    ("duplicate.csv", HEADER + "p1,x,o1,1\np1,x,o2,0\np1,x,o1,0\n", 4, "offer_id",
     "already shown offer 'o1' at line 2"),
    ("conflict.csv", HEADER + "p1,x,o1,1\np1,other,o2,0\n", 3, "persona", "different persona than at line 2"),
    ("ragged.csv", HEADER + "p1,x,o1,1,extra\n", 2, None, "wrong number of fields"),
    ("blank_lines.csv", HEADER + "p1,x,o1,1\n\n\np1,x,o9,0\n", 5, "offer_id", "unknown offer id 'o9'"),
    ("twice.csv", "persona_id,persona,offer_id,accepted,accepted\np1,x,o1,1,0\n", 1, "accepted",
     "the header names this column 2 times"),
    ("blank_lines.jsonl", '{"persona_id": "p1", "persona": "x", "offer_id": "o1", "accepted": "Y"}\n\n'
     '{"persona_id": "p1", "persona": "x", "offer_id": "o9", "accepted": "N"}\n', 3, "offer_id", "unknown offer"),
    ("bad.jsonl", '{"persona_id": "p1", "persona": "x", "offer_id": "o1", "accepted": 1}\n{oops\n',
     2, None, "not valid JSON"),
    ("types.jsonl", '{"persona_id": ["p1"], "persona": "x", "offer_id": "o1", "accepted": 1}\n',
     1, "persona_id", "wrong type"),
    ("nan.jsonl", '{"persona_id": "p1", "persona": "x", "offer_id": "o1", "accepted": NaN}\n',
     1, "accepted", "null or NaN"),
    ("missing.jsonl", '{"persona_id": "p1", "persona": "x", "accepted": 1}\n', 1, "offer_id",
     "missing column"),
    ("notes.txt", "hello", None, None, "expected a .csv or .jsonl file"),
])
def test_bad_interactions_get_one_clear_error(tmp_path, offers, name, text, line, field, message):
    path = write(tmp_path, name, text)
    with pytest.raises(DataValidationError, match=message) as info:
        load_user_data(path, offers)
    err = info.value
    assert (err.file, err.line, err.field) == (path, line, field)
    assert str(err).startswith(str(path) + (f", line {line}" if line else ""))


@pytest.mark.parametrize("accepted, rejected", [("1", "0"), ("true", "false"), ("Yes", "No"), ("Y", "N"),
                                                ("accepted", "rejected"), ("ACCEPT", "reject")])
def test_one_outcome_vocabulary(tmp_path, offers, accepted, rejected):
    path = write(tmp_path, "log.csv", HEADER + f"p1,x,o1,{accepted}\np1,x,o2,{rejected}\n")
    rows = load_user_data(path, offers).rows
    assert rows[0]["accepted_offer_ids"] == ["o1"] and rows[0]["rejected_offer_ids"] == ["o2"]


def test_duplicated_offer_ids_in_the_catalog(tmp_path):
    bad = write(tmp_path, "offers.csv", "offer_id,offer\no1,A\no2,B\no1,C\n")
    good = write(tmp_path, "i.csv", HEADER + "p1,x,o1,1\n")
    with pytest.raises(DataValidationError, match=r"line 4, field 'offer_id': duplicated id 'o1' \(first at line 2\)"):
        load_user_data(good, bad)


def test_jsonl_with_list_attributes_builds_a_dataset(tmp_path, offers):
    lines = [{"persona_id": f"p{i}", "persona": f"persona {i}", "offer_id": "o1" if i % 2 else "o2",
              "accepted": True, "interests": ["a", "b"]} for i in range(10)]
    path = write(tmp_path, "log.jsonl", "".join(json.dumps(x) + "\n" for x in lines))
    out, _ = build_user_dataset(path, offers, tmp_path / "ds", val_fraction=0.2, test_fraction=0.2)
    import datasets

    dd = datasets.load_from_disk(str(out))
    assert sum(len(dd[s]) for s in dd) == 10 and dd["train"][0]["interests"] == ["a", "b"]


def test_nothing_is_written_when_validation_fails(tmp_path, offers):
    path = write(tmp_path, "bad.csv", HEADER + "p1,x,o9,1\n")
    with pytest.raises(DataValidationError):
        build_user_dataset(path, offers, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_validate_data(tmp_path, offers, capsys):
    assert main(["validate-data", str(EXAMPLES / "interactions.csv"),
                 "--offers", str(EXAMPLES / "offers.csv")]) == 0
    assert "valid: 12 personas, 4 offers" in capsys.readouterr().out
    bad = write(tmp_path, "bad.csv", HEADER + "p1,x,o1,perhaps\n")
    assert main(["validate-data", str(bad), "--offers", str(offers)]) == 2
    assert "line 2, field 'accepted': 'perhaps' is not an outcome" in capsys.readouterr().err


def test_non_utf8_bytes_and_a_directory_get_a_clear_error(tmp_path, offers):
    path = tmp_path / "latin1.csv"
    path.write_bytes(HEADER.encode() + "p1,Zoë from Köln,o1,1\n".encode("latin-1"))
    with pytest.raises(DataValidationError, match=r"latin1.csv, line 2: byte 6: b'\\xeb' is not UTF-8 text"):
        load_user_data(path, offers)
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(DataValidationError, match="is a directory"):
        load_user_data(tmp_path / "folder.csv", offers)


def test_quoted_newlines_and_a_byte_order_mark(tmp_path, offers):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeff".encode() + (HEADER + 'p1,"two\nlines",o1,1\np2,y,o2,1\n').encode())
    rows = load_user_data(path, offers).rows
    assert [r["persona"] for r in rows] == ["two\nlines", "y"]


def test_a_large_log_is_streamed_in_bounded_memory(tmp_path):
    """The whole file is never held: peak memory stays near the validated result, below the file's size x2.

    (Reading the file whole, as before, peaked at about 8x its size.) 500,000 rows: `make bench`.
    """
    import tracemalloc

    from example_log import write_example_log

    log, catalog = write_example_log(tmp_path, rows=20_000)
    tracemalloc.start()
    try:
        data = load_user_data(log, catalog)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(data.rows) == 2_000 and len(data.catalog) == 200
    assert sum(len(r["accepted_offer_ids"]) + len(r["rejected_offer_ids"]) for r in data.rows) == 20_000
    assert peak < 2 * log.stat().st_size


def test_a_duplicated_row_names_the_first_one(tmp_path, offers):
    path = write(tmp_path, "dup.csv", HEADER + "p1,x,o1,1\np2,y,o1,1\np2,y,o2,0\np1,x,o2,0\np2,y,o1,0\n")
    with pytest.raises(DataValidationError, match="line 6, field 'offer_id'.*offer 'o1' at line 3"):
        load_user_data(path, offers)


def test_validate_data_out_never_deletes_a_folder_it_did_not_write(tmp_path, offers, capsys):
    log = write(tmp_path, "log.csv", HEADER + "".join(f"p{i},persona {i},o{1 + i % 2},1\n" for i in range(12)))
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("keep me")
    assert main(["validate-data", str(log), "--offers", str(offers), "--out", str(theirs)]) == 2
    assert "holds files slm4offer did not write" in capsys.readouterr().err
    assert (theirs / "notes.txt").read_text() == "keep me" and len(list(theirs.iterdir())) == 1
    assert main(["validate-data", str(log), "--offers", str(offers), "--out", str(log)]) == 2
    assert "is a file" in capsys.readouterr().err and log.read_text().startswith(HEADER)
    ours = tmp_path / "ours"
    assert main(["validate-data", str(log), "--offers", str(offers), "--out", str(ours)]) == 0
    assert main(["validate-data", str(log), "--offers", str(offers), "--out", str(ours)]) == 0, "ours: replaced"


def test_customers_who_accepted_nothing_are_dropped_and_counted_or_refused(tmp_path, offers, capsys):
    path = write(tmp_path, "log.csv", HEADER + "p1,x,o1,1\np2,y,o1,0\np2,y,o2,0\np3,z,o2,1\n")
    user = load_user_data(path, offers)
    assert [r["persona_id"] for r in user.rows] == ["p1", "p3"] and user.dropped_ids == ["p2"]
    with pytest.raises(DataValidationError, match="line 3, field 'accepted': persona 'p2' has no accepted offer"):
        load_user_data(path, offers, require_accepted=True)
    nobody = write(tmp_path, "nobody.csv", HEADER + "p1,x,o1,0\n")
    with pytest.raises(DataValidationError, match="no persona accepted any offer"):
        load_user_data(nobody, offers)


def test_row_errors_are_reported_together_up_to_max_errors(tmp_path, offers, capsys):
    bad = HEADER + "p1,x,o1,1\np2,y,o9,1\np3,,o1,1\np4,w,o1,maybe\np5,v,o1,1\n"
    path = write(tmp_path, "log.csv", bad)
    with pytest.raises(DataValidationError, match="line 3.*unknown offer id"):
        load_user_data(path, offers)  # max_errors=1: the first error, as it is
    with pytest.raises(DataValidationErrors) as info:
        load_user_data(path, offers, max_errors=10)
    assert [(e.line, e.field) for e in info.value.errors] == [(3, "offer_id"), (4, "persona"), (5, "accepted")]
    assert "3 problems in" in str(info.value) and "there may be more" not in str(info.value)
    with pytest.raises(DataValidationErrors, match="stopped at max_errors=2, there may be more") as info:
        load_user_data(path, offers, max_errors=2)
    assert len(info.value.errors) == 2
    assert main(["validate-data", str(path), "--offers", str(offers), "--max-errors", "5"]) == 2
    err = capsys.readouterr().err
    assert "line 3, field 'offer_id'" in err and "line 5, field 'accepted'" in err


def test_a_persona_template_builds_the_text_from_attribute_columns(tmp_path, offers):
    header = "persona_id,offer_id,accepted,age,job,hobbies\n"
    path = write(tmp_path, "log.csv", header + "p1,o1,1,34,nurse,travel\np1,o2,0,34,nurse,travel\n"
                                              "p2,o2,1,68,teacher,gardening\n")
    template = "A {age}-year-old {job} who likes {hobbies}."
    rows = load_user_data(path, offers, persona_template=template).rows
    assert [r["persona"] for r in rows] == ["A 34-year-old nurse who likes travel.",
                                            "A 68-year-old teacher who likes gardening."]
    assert rows[0]["job"] == "nurse", "the attribute columns are kept"
    with pytest.raises(DataValidationError, match="line 1, field 'salary': missing column"):
        load_user_data(path, offers, persona_template="Earns {salary}.")
    with pytest.raises(ValueError, match="name each column in braces"):
        load_user_data(path, offers, persona_template="A {}-year-old")
    both = write(tmp_path, "both.csv", HEADER.strip() + ",age\np1,x,o1,1,34\n")
    with pytest.raises(DataValidationError, match="persona column too"):
        load_user_data(both, offers, persona_template="Aged {age}.")


def test_split_fractions_come_from_the_command_line(tmp_path, offers, capsys):
    log = write(tmp_path, "log.csv", HEADER + "".join(f"p{i},persona {i},o{1 + i % 2},1\n" for i in range(20)))
    out = tmp_path / "ds"
    assert main(["validate-data", str(log), "--offers", str(offers), "--out", str(out),
                 "--val-fraction", "0.25", "--test-fraction", "0.3"]) == 0
    import datasets

    dd = datasets.load_from_disk(str(out))
    assert (len(dd["train"]), len(dd["validation"]), len(dd["test"])) == (9, 5, 6)
    assert main(["validate-data", str(log), "--offers", str(offers), "--out", str(out), "--test-fraction", "0.6"]) == 2
    assert "--test-fraction 0.6: must be in (0, 0.5)" in capsys.readouterr().err
