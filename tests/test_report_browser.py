"""The HTML report in a real browser: no console errors, the verdict table and the plots drawn."""

import re
import shutil
import struct
import subprocess
import warnings
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import records
import torch

from featurecontrols import report
from featurecontrols.axes.evidence import Axis, AxisName, CandidateResult, Detail, Evidence
from featurecontrols.measures.probe_search import ProbeSearch, SearchSpace
from featurecontrols.pipeline.results import RunResult, TopInput
from featurecontrols.stats import summarise_null

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless_shell")
HISTOGRAM_BLUE = (0x8A, 0xB4, 0xF8)
VERDICT_GREEN = (0xE6, 0xF4, 0xEA)


def _result() -> RunResult:
    """A small run: one feature with a shuffled-label null, randomised copies, spectra and a probe search."""
    pytest.importorskip("optuna")
    rng = torch.Generator().manual_seed(0)
    null = 0.5 + 0.03 * torch.randn(200, generator=rng)
    accuracy = "held-out accuracy"
    null_summary = summarise_null(null)
    decodable = Evidence("decodable", "shuffled labels", accuracy, 0.9, 0.5, 0.4, 0.35, 0.45, 0.005, 0.01,
                         null=null_summary)  # fmt: skip
    copies = Detail(copies=(0.58, 0.6, 0.62))
    learned = Evidence("learned", "reinitialised weights", accuracy, 0.9, 0.6, 0.3, 0.2, 0.4, 0.01, 0.02,
                       detail=copies)  # fmt: skip
    axes: dict[AxisName, Axis] = {
        "decodable": Axis("decodable", "yes", (decodable,)),
        "learned": Axis("learned", "yes", (learned,)),
        "used": Axis("used", "not run", ()),
    }
    X = torch.randn(300, 6, generator=rng)
    y = (X[:, 0] > 0).long()
    cells = (X[:, :3] > 0).long() @ torch.tensor([1, 2, 4])
    space = SearchSpace(hidden=(2, 4), steps=(5, 10))
    search = ProbeSearch(n_trials=3, n_controls=2, space=space).fit(X, y, cells).result_
    candidate = CandidateResult(
        "resid_post", "x_0", "labelled feature", "model feature", axes, "model feature"
    )
    spectra = {"trained": [[3.0, 1.0, 0.3, 0.1]], "reinitialised weights": [[1.5, 1.2, 1.0, 0.9]]}
    return RunResult(
        sites=("resid_post",),
        candidates=(candidate,),
        settings=records.settings(n_examples=300, n_test=90, n_tests=2),
        spectra={"resid_post": spectra},
        search={"x_0": [search.as_dict()]},
    )


def test_report_is_offline_and_has_every_plot() -> None:
    page = report.to_html(_result())
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert page.index('id="verdicts"') < page.index("<svg")
    for title in (
        "spectra",
        "search control",
        "search complexity",
        "decodable: shuffled labels",
        "learned: reinitialised weights",
    ):
        assert f"<title>{title}" in page


def _browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path is not None:
            return path
    pytest.skip("no chromium on this machine")


def _screenshot(browser: str, html_path: Path, png: Path) -> str:
    """Screenshot ``html_path`` headless; return the browser's stderr (console messages are logged there)."""
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--hide-scrollbars", f"--user-data-dir={png.parent / ('profile-' + png.stem)}",
         "--enable-logging=stderr", "--v=0", f"--screenshot={png}", "--window-size=1000,1400",
         html_path.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert png.is_file(), done.stderr[-2000:]
    return done.stderr


def read_png(path: Path) -> np.ndarray:
    """Decode an 8-bit RGB or RGBA, non-interlaced PNG into an (h, w, 3) uint8 array (zlib and numpy only)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    bpp = 3 if colour == 2 else 4
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, 1 + width * bpp)
    out = np.zeros((height, width * bpp), dtype=np.int32)
    previous = np.zeros(width * bpp, dtype=np.int32)
    for r in range(height):
        kind, line = raw[r, 0], raw[r, 1:].astype(np.int32)
        if kind == 0:
            row = line
        elif kind == 1:  # Sub: a running sum per channel
            row = np.cumsum(line.reshape(width, bpp), axis=0).reshape(-1) % 256
        elif kind == 2:  # Up
            row = (line + previous) % 256
        else:  # Average (3) and Paeth (4) depend on the byte to the left: one byte at a time
            row = np.zeros_like(line)
            for i in range(line.size):
                a = int(row[i - bpp]) if i >= bpp else 0
                b, c = int(previous[i]), int(previous[i - bpp]) if i >= bpp else 0
                if kind == 3:
                    row[i] = (line[i] + (a + b) // 2) % 256
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    row[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) % 256
        out[r], previous = row, row
    return out.reshape(height, width, bpp)[:, :, :3].astype(np.uint8)


def _pixels_of(image: np.ndarray, colour: tuple[int, int, int], tolerance: int = 8) -> int:
    return int((np.abs(image.astype(np.int32) - np.array(colour)).max(axis=2) <= tolerance).sum())


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    browser = _browser()
    page = report.to_html(_result())
    full, bare = tmp_path / "report.html", tmp_path / "bare.html"
    full.write_text(page, encoding="utf-8")
    bare.write_text(re.sub(r"<svg.*?</svg>", "", page, flags=re.S), encoding="utf-8")
    log = _screenshot(browser, full, tmp_path / "report.png")
    _screenshot(browser, bare, tmp_path / "bare.png")
    console = [line for line in log.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    # the check above means something only if this browser logs console messages to stderr
    probe = tmp_path / "probe.html"
    probe.write_text("<script>console.error('featurecontrols-console-probe')</script>", encoding="utf-8")
    if "featurecontrols-console-probe" not in _screenshot(browser, probe, tmp_path / "probe.png"):
        warnings.warn(
            "this chromium does not log console messages to stderr: console not checked", stacklevel=1
        )
    shot, without_plots = read_png(tmp_path / "report.png"), read_png(tmp_path / "bare.png")
    top = shot[: shot.shape[0] // 4]
    assert _pixels_of(top, VERDICT_GREEN) > 500  # the verdict cell, near the top of the page
    assert _pixels_of(shot, HISTOGRAM_BLUE) > 200  # the null histogram's bars and the copies' dots
    assert _pixels_of(without_plots, HISTOGRAM_BLUE) == 0
    assert (shot != without_plots).any(axis=2).sum() > 5000


def _encode_png(image: np.ndarray, path: Path) -> None:
    """An RGB PNG whose row r uses filter r % 5 (to check ``read_png`` on every filter)."""
    h, w, _ = image.shape
    rows, previous = [], np.zeros(w * 3, dtype=np.int32)
    for r in range(h):
        line, kind = image[r].reshape(-1).astype(np.int32), r % 5
        left = np.concatenate([np.zeros(3, dtype=np.int32), line[:-3]])
        up_left = np.concatenate([np.zeros(3, dtype=np.int32), previous[:-3]])
        p = left + previous - up_left
        pa, pb, pc = np.abs(p - left), np.abs(p - previous), np.abs(p - up_left)
        paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, previous, up_left))
        predictor = [0, left, previous, (left + previous) // 2, paeth][kind]
        rows.append(bytes([kind]) + ((line - predictor) % 256).astype(np.uint8).tobytes())
        previous = line

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


def test_png_reader_undoes_every_filter(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 256, (10, 7, 3), dtype=np.uint8)
    _encode_png(image, tmp_path / "x.png")
    assert (read_png(tmp_path / "x.png") == image).all()


def test_series_page_renders_its_curves_in_headless_chromium(tmp_path: Path) -> None:

    from featurecontrols.pipeline.checkpoint import Checkpoint
    from featurecontrols.pipeline.series import SeriesResult
    from featurecontrols.report.series_html import series_to_html

    browser = _browser()
    first = _result()
    later = replace(first, candidates=(replace(first.candidates[0], verdict="dataset feature"),))
    checkpoints = (Checkpoint(0, {}, {"loss": 1.0}), Checkpoint(100, {}, {"loss": 0.2}))
    page = series_to_html(SeriesResult(checkpoints, (first, later), 4), "toy")
    assert page.count("<svg") == 4  # the timeline, the loss, and x_0's decodable and learned effects
    path = tmp_path / "series.html"
    path.write_text(page, encoding="utf-8")
    log = _screenshot(browser, path, tmp_path / "series.png")
    assert not [line for line in log.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    shot = read_png(tmp_path / "series.png")
    assert _pixels_of(shot, VERDICT_GREEN) > 500  # the step whose verdict is "model feature"
    assert _pixels_of(shot, (0x18, 0x80, 0x38)) > 20  # its points on the curves
    assert _pixels_of(shot, (0xE3, 0x74, 0x00)) > 20  # the later step's "dataset feature" points


def _latents_result(n: int = 40) -> RunResult:
    """A dictionary of n latents: the first quarter model features (learned and used), the rest
    dataset features."""
    candidates = []
    for j in range(n):
        model = j < n // 4
        learned = Evidence("learned", "reinitialised", "best code match", 0.9, 0.3 if model else 0.88,
                           0.6 if model else 0.02, 0.5, 0.7, 1e-6 if model else 1.0, 1e-5 if model else 1.0,
                           detail=Detail(copies=(0.3,)))  # fmt: skip
        null = summarise_null(0.05 + 0.01 * torch.randn(50, generator=torch.Generator().manual_seed(j)))
        used = Evidence("used", "latent ablation vs random directions", "change", 0.3 if model else 0.0,
                        0.05, 0.25 if model else -0.05, 0.2, 0.3, 0.001, 0.002, null=null)  # fmt: skip
        axes: dict[AxisName, Axis] = {
            "decodable": Axis("decodable", "yes", (replace(learned, axis="decodable", p_adjusted=1e-4),)),
            "learned": Axis("learned", "yes" if model else "no", (learned,)),
            "used": Axis("used", "yes" if model else "no", (used,)),
        }
        verdict = "model feature" if model else "dataset feature"
        candidates.append(CandidateResult("resid", f"sae/{j}", "dictionary latent", verdict, axes, verdict))
    top = tuple(
        (TopInput(3 * j, 2.0, f"the <b>{j}</b> [cat]"), TopInput(3 * j + 1, 1.5, None)) for j in range(n)
    )
    return RunResult(
        sites=("resid",), candidates=tuple(candidates), settings=records.settings(n_tests=2 * n),
        top_inputs={"resid/sae": top},
    )  # fmt: skip


def test_latents_get_counts_and_a_scatter_and_only_the_top_ones_a_row(tmp_path: Path) -> None:
    page = report.to_html(_latents_result())
    assert "<title>latents of resid/sae" in page
    assert "<td class='model-feature'>model feature</td><td>10</td>" in page
    assert "<td class='dataset-feature'>dataset feature</td><td>30</td>" in page
    verdicts = page.split('<table id="verdicts">')[1].split("</table>")[0]
    rows = re.findall(r"<tr><td>(sae/\d+)</td>", verdicts)
    assert len(rows) == 10  # 5 per verdict
    inputs = page.split("<table class='top-inputs'>")[1].split("</table>")[0]
    assert re.findall(r"<tr><td>(sae/\d+)</td>", inputs) == rows  # their top-activating inputs
    assert "2.00 the &lt;b&gt;0&lt;/b&gt; [cat]<br>1.50 row 1" in inputs  # escaped; a row without context
    browser = _browser()
    path = tmp_path / "latents.html"
    path.write_text(page, encoding="utf-8")
    log = _screenshot(browser, path, tmp_path / "latents.png")
    assert not [line for line in log.splitlines() if "Uncaught" in line]
    shot = read_png(tmp_path / "latents.png")
    assert _pixels_of(shot, (0x18, 0x80, 0x38), tolerance=40) > 20  # the model features' green dots


def test_series_page_counts_a_dictionarys_latents_per_step_in_headless_chromium(tmp_path: Path) -> None:
    """Latents refitted at every checkpoint are counted per verdict: a table and one curve, rendered."""
    from featurecontrols.pipeline.checkpoint import Checkpoint
    from featurecontrols.pipeline.series import SeriesResult
    from featurecontrols.report.series_html import series_to_html

    browser = _browser()
    early, late = _latents_result(8), _latents_result(40)
    checkpoints = (Checkpoint(0, {}, {"loss": 1.0}), Checkpoint(100, {}, {"loss": 0.2}))
    series = SeriesResult(checkpoints, (early, late), 96)
    assert series.followed() == [] and list(series.latent_counts().values()) == [
        [{"model feature": 2, "dataset feature": 6}, {"model feature": 10, "dataset feature": 30}]
    ]
    page = series_to_html(series, "toy")
    assert "latents per verdict" in page and "<td>30</td>" in page
    path = tmp_path / "series.html"
    path.write_text(page, encoding="utf-8")
    log = _screenshot(browser, path, tmp_path / "series.png")
    assert not [line for line in log.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert _pixels_of(read_png(tmp_path / "series.png"), HISTOGRAM_BLUE) > 20  # the curve's points
