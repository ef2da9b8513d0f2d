"""Progress shows in a log: plain lines (done/total, rate, ETA) when stderr is not a terminal."""

import io
import re

import pytest

from featurecontrols.errors import FeatureControlsError
from featurecontrols.progress import INTERVAL_ENV, log_lines, track


def test_a_log_gets_a_start_line_periodic_lines_and_an_end_line() -> None:
    stream = io.StringIO()
    assert list(log_lines(range(5), "nulls", 5, stream, interval=0.0)) == list(range(5))
    lines = stream.getvalue().splitlines()
    assert lines[0] == "featurecontrols: nulls: 0/5 (0%), started"
    assert len(lines) == 7  # start, one per item (interval 0), end
    assert re.fullmatch(r"featurecontrols: nulls: 3/5 \(60%\), \S+/s, ETA \d+ s", lines[3])
    assert re.fullmatch(r"featurecontrols: nulls: 5/5 \(100%\), done in \d+ s", lines[-1])


def test_lines_are_spaced_by_the_interval() -> None:
    stream = io.StringIO()
    list(log_lines(range(1000), "fast", None, stream, interval=3600.0))
    assert stream.getvalue().splitlines() == [
        "featurecontrols: fast: 0, started",
        "featurecontrols: fast: 1000, done in 0 s",
    ]


def test_track_writes_plain_lines_when_stderr_is_not_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(INTERVAL_ENV, "0")
    assert list(track(range(3), "jobs of stage 0", 3)) == [0, 1, 2]
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "featurecontrols: jobs of stage 0: 0/3 (0%), started"
    assert err[-1].startswith("featurecontrols: jobs of stage 0: 3/3 (100%), done in")
    assert list(track(range(3), "quiet", 3, enabled=False)) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_a_bad_interval_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(INTERVAL_ENV, "soon")
    with pytest.raises(FeatureControlsError, match=INTERVAL_ENV):
        list(track(range(3), "x", 3))
