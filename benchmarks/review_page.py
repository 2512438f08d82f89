"""Review page benchmark: how fast the page shows a 512 x 512 x 15 DICOM series, and the screenshot in docs/.

Usage (from the repository root; Debian's chromium and chromium-driver installed)::

    python -m benchmarks.review_page [--loads 10] [--no-screenshot]

1. Page load: a synthetic 512 x 512 x 15 sagittal DICOM series (0.5 mm pixels,
   4 mm slices, five Gaussian "bodies" labeled by the dummy network, so the
   number is the page's, not the model's) is served on loopback by
   ``spinelabel.review``; headless Chromium loads the page ``--loads`` times.
   Page load = from navigation start to the first slice drawn with its labels
   (``window.spinelabelReadyMs``, set by the page): the HTML, script and style,
   the worklist, the scan's meta and one 512 x 512 uint16 slice. Target: <= 1 s.
2. Screenshot (``docs/review.png``): the page on a real lumbar scan of
   ``../shared/data/lumbar-mr`` (the first validation scan of
   benchmarks/lumbar_split.json), labeled by the shipped lumbar model.

Writes the numbers to docs/RESULTS.md between the review-page markers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.lumbar import SHARED, git_commit, write_section

REPO = Path(__file__).resolve().parents[1]
#: Target of issue 13 for the page load on loopback (ms).
TARGET_MS = 1000.0
#: Seconds to wait for one page load before giving up.
WAIT_S = 60
#: Series measured: columns x rows x slices, and voxel size (mm).
SERIES_SHAPE = (512, 512, 15)
SERIES_SPACING_MM = (0.5, 0.5, 4.0)


def _load_ms(driver, url: str) -> tuple[float, float]:
    """(page's own ready time, wall time of the whole load as Selenium sees it), both in ms."""
    from selenium.webdriver.support.ui import WebDriverWait

    start = time.perf_counter()
    driver.get(url)
    WebDriverWait(driver, WAIT_S).until(lambda d: d.execute_script("return document.body.dataset.ready") == "1")
    wall = (time.perf_counter() - start) * 1000.0
    return float(driver.execute_script("return window.spinelabelReadyMs")), wall


def _server_ms(server, start_slice: int, loads: int) -> float:
    """Median time (ms) for the server alone to answer the page and its first slice (no browser; http.client)."""
    import http.client

    from spinelabel.testing.review import server_headers

    host, port = server.server_address[:2]
    headers = server_headers(server)
    times = []
    for _ in range(loads):
        start = time.perf_counter()
        conn = http.client.HTTPConnection(host, port, timeout=WAIT_S)
        for path in ("/", "/static/app.js", "/static/style.css", f"/api/scans/0/slices/{start_slice}"):
            conn.request("GET", path, headers=headers)
            conn.getresponse().read()
        conn.close()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def measure_page_load(loads: int) -> dict:
    """Page-load times (ms) of the synthetic series: the first load and the following ones."""
    from spinelabel.io.dicom_write import write_dicom_series
    from spinelabel.testing.review import blob_series_volume, headless_chromium, serving, session_for

    with tempfile.TemporaryDirectory(prefix="spinelabel-review-bench-") as tmp:
        volume, _ = blob_series_volume(SERIES_SHAPE, SERIES_SPACING_MM)
        series = Path(tmp) / "series"
        write_dicom_series(volume, series)
        session = session_for([series], Path(tmp) / "labels")
        n_labels = len(session.scans[0].doc["vertebrae"])
        with serving(session) as server, headless_chromium() as driver:
            times = [_load_ms(driver, server.url) for _ in range(loads)]
            server_ms = _server_ms(server, session.meta(0)["start_slice"], loads)
    ready = [t[0] for t in times]
    return {"first": ready[0], "median": statistics.median(ready[1:] or ready), "max": max(ready[1:] or ready),
            "wall_median": statistics.median(t[1] for t in times[1:] or times), "loads": loads, "labels": n_labels,
            "server": server_ms, "load_average": os.getloadavg()[0]}


def take_screenshot(out: Path) -> str:
    """Save the page on a real lumbar scan (shipped model) as ``out``; returns the scan's name."""
    from spinelabel.pipeline import make_labeler
    from spinelabel.review import ReviewSession, prepare_scans
    from spinelabel.testing.review import headless_chromium, serving

    case = json.loads((REPO / "benchmarks" / "lumbar_split.json").read_text())["validation"][0]
    image = SHARED / case / "image.nii.gz"
    with tempfile.TemporaryDirectory(prefix="spinelabel-review-shot-") as tmp:
        scans, images, failures = prepare_scans([image], [case], Path(tmp), lambda: make_labeler("lumbar"))
        if failures:
            raise SystemExit(f"cannot label {image}: {failures[0][1]}")
        with serving(ReviewSession(scans, "benchmark", images)) as server, headless_chromium() as driver:
            _load_ms(driver, server.url)
            driver.execute_script("document.querySelector('#labels .marker').dispatchEvent(new MouseEvent('mousedown', {bubbles: true}));"
                                  "window.dispatchEvent(new MouseEvent('mouseup'))")  # one label selected, as in use
            driver.save_screenshot(str(out))
    return case


def _body(args: argparse.Namespace, load: dict, shot: str | None) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    verdict = "within" if load["median"] <= TARGET_MS else "over"
    lines = [
        "## Review page: load time (issue #13)", "",
        f"- command: `python -m benchmarks.review_page {' '.join(sys.argv[1:])}`".rstrip(),
        f"- date: {when}, commit `{git_commit()}`",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        "headless Debian Chromium via Selenium, server on loopback (127.0.0.1); "
        f"load average {load['load_average']:.1f} at the end",
        f"- series: synthetic {SERIES_SHAPE[0]} x {SERIES_SHAPE[1]} x {SERIES_SHAPE[2]} sagittal DICOM "
        f"({SERIES_SPACING_MM[0]} mm pixels, {SERIES_SPACING_MM[2]} mm slices), {load['labels']} labels (dummy network)",
        "- page load = navigation start to the first slice drawn with its labels (`window.spinelabelReadyMs`)", "",
        "| measure | value |", "|---|---|",
        f"| first load (new browser) | {load['first']:.0f} ms |",
        f"| median of the next {load['loads'] - 1} loads | {load['median']:.0f} ms ({verdict} the 1 s target) |",
        f"| slowest of those | {load['max']:.0f} ms |",
        f"| median wall time as Selenium sees it (incl. its own round trips) | {load['wall_median']:.0f} ms |",
        f"| server alone: page (with worklist and meta), script, style and one slice, median | {load['server']:.0f} ms |",
    ]
    if shot:
        lines += ["", f"Screenshot `docs/review.png`: the page on the real scan `{shot}` (shipped lumbar model)."]
    return "\n".join(lines)


def main() -> None:
    """Measure, take the screenshot, write the RESULTS section."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loads", type=int, default=10, help="Page loads to time (the first with a new browser).")
    ap.add_argument("--no-screenshot", action="store_true", help="Do not take docs/review.png.")
    ap.add_argument("--results", type=Path, default=REPO / "docs" / "RESULTS.md")
    args = ap.parse_args()
    from spinelabel.testing.review import chromium_missing

    missing = chromium_missing()
    if missing:
        raise SystemExit(f"cannot run: {missing}")
    load = measure_page_load(max(2, args.loads))
    print(f"page load: first {load['first']:.0f} ms, median {load['median']:.0f} ms, max {load['max']:.0f} ms")
    shot = None
    if not args.no_screenshot and SHARED.is_dir():
        shot = take_screenshot(REPO / "docs" / "review.png")
        print(f"screenshot of {shot} in docs/review.png")
    write_section(args.results, "review-page", _body(args, load, shot))
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
