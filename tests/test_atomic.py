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


def test_temporaries_of_dead_processes_are_swept_and_live_ones_kept(tmp_path: Path) -> None:
    import os
    import socket

    host = socket.gethostname()
    dead = tmp_path / f".r.json.{host}-999999999.abc.tmp"  # no such pid
    live = tmp_path / f".r.json.{host}-{os.getpid()}.def.tmp"  # this process: a write under way
    other = tmp_path / ".other.json.x-1.ghi.tmp"
    for p in (dead, live, other):
        p.write_bytes(b"half")
    atomic.write_json(tmp_path / "r.json", {"ok": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name, "r.json"])
