"""README's generated blocks say exactly what their committed result files hold."""

import json
from pathlib import Path

import own_data_path
import paper_estimate
import pytest
from readme_blocks import markers

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize("script", [own_data_path, paper_estimate], ids=lambda m: m.__name__)
def test_each_block_is_its_result_file_rendered(script):
    start, end = markers(script.NAME, script.SCRIPT)
    record = json.loads(script.RESULTS.read_text())
    assert f"{start}\n{script.readme_block(record)}\n{end}" in (ROOT / "README.md").read_text()


def test_write_result_replaces_only_its_block(tmp_path):
    from readme_blocks import write_result

    start, end = markers("x", "s.py")
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{start}\nold\n{end}\nafter\n")
    write_result({"n": 1}, tmp_path / "x.json", "new", "x", "s.py", readme)
    assert readme.read_text() == f"before\n{start}\nnew\n{end}\nafter\n"
    assert json.loads((tmp_path / "x.json").read_text()) == {"n": 1}
