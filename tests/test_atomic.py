import json
from pathlib import Path

import pytest

from featurecontrols import atomic


def test_write_json_round_trips(tmp_path: Path) -> None:
    path = atomic.write_json(tmp_path / "sub" / "r.json", {"a": [1, 2.5]})
    assert json.loads(path.read_text()) == {"a": [1, 2.5]}


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    atomic.write_json(path, {"ok": 1})
    with pytest.raises(ValueError):
        atomic.write_json(path, {"bad": float("nan")})  # NaN is not JSON
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_an_error_while_writing_removes_the_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "r.txt"
    with pytest.raises(UnicodeEncodeError):
        atomic.write_text(path, "half" + "\ud800")  # a lone surrogate fails mid-write
    assert list(tmp_path.iterdir()) == []
