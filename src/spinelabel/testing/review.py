"""For tests and benchmarks of the review page: headless Chromium, a server in a thread, synthetic sagittal series.

Chromium is Debian's ``chromium`` with ``chromium-driver`` (installed by
``.ci/run``), driven through Selenium with the driver given by path, so
Selenium never looks for (or downloads) a driver of its own.
"""

from __future__ import annotations

import http.client
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..geometry import Volume
from ..review import ReviewServer, ReviewSession
from ..review.server import LOOPBACK

#: Where Debian puts the browser and its driver; PATH is searched first.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER_NAMES = ("chromedriver",)
#: Browser window of the tests and screenshots (CSS pixels).
WINDOW_SIZE = (1400, 900)
#: Gaussian vertebral "bodies" of the synthetic series: standard deviations (mm) across, front-back, head-foot.
BODY_SD_MM = (12.0, 5.0, 5.0)
#: Distance between neighbouring synthetic bodies (mm): a typical lumbar spacing.
BODY_SPACING_MM = 36.0


def _which(names: tuple[str, ...]) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here (no Selenium, browser or driver), or None when they can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if _which(CHROMIUM_NAMES) is None:
        return "no chromium on PATH (Debian: apt-get install chromium chromium-driver; .ci/run installs them)"
    if _which(CHROMEDRIVER_NAMES) is None:
        return "no chromedriver on PATH (Debian: apt-get install chromium-driver; .ci/run installs it)"
    return None


@contextmanager
def headless_chromium(window: tuple[int, int] = WINDOW_SIZE) -> Iterator[Any]:
    """A Selenium driver of a headless Chromium (closed at the end)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _which(CHROMIUM_NAMES) or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={window[0]},{window[1]}", "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=_which(CHROMEDRIVER_NAMES)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@contextmanager
def serving(session: ReviewSession, token: str = "test-token") -> Iterator[ReviewServer]:
    """``session`` served on a free loopback port in a background thread (shut down at the end)."""
    server = ReviewServer(session, LOOPBACK, 0, token)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def blob_series_volume(
    shape: tuple[int, int, int] = (512, 512, 15), spacing_mm: tuple[float, float, float] = (0.5, 0.5, 4.0), n: int = 5,
) -> tuple[Volume, np.ndarray]:
    """A sagittal series of Gaussian "bodies" along the head-foot axis, as ``write_dicom_series`` wants it.

    Axis 0 runs posterior (DICOM columns), axis 1 inferior (rows), axis 2
    right (slices); the volume is centred on the world origin.

    Returns
    -------
    volume : Volume
    centres : ndarray, shape (n, 3)
        Body centres, world RAS mm, cranial first.
    """
    affine = np.zeros((4, 4))
    affine[1, 0], affine[2, 1], affine[0, 2], affine[3, 3] = -spacing_mm[0], -spacing_mm[1], spacing_mm[2], 1.0
    affine[:3, 3] = -affine[:3, :3] @ ((np.asarray(shape) - 1) / 2.0)
    offset = BODY_SPACING_MM * (n - 1) / 2.0
    centres = np.array([[0.0, 0.0, offset - BODY_SPACING_MM * i] for i in range(n)])
    axes = [np.arange(s, dtype=np.float32) for s in shape]
    world = [affine[r, r_axis] * axes[r_axis] + affine[r, 3] for r, r_axis in ((1, 0), (2, 1), (0, 2))]
    y, z, x = (w.astype(np.float32) for w in world)  # along axes 0, 1, 2
    data = np.zeros(shape, np.float32)
    for cx, cy, cz in centres:
        gy = np.exp(-0.5 * ((y - cy) / BODY_SD_MM[1]) ** 2)
        gz = np.exp(-0.5 * ((z - cz) / BODY_SD_MM[2]) ** 2)
        gx = np.exp(-0.5 * ((x - cx) / BODY_SD_MM[0]) ** 2)
        data += gy[:, None, None] * gz[None, :, None] * gx[None, None, :]
    data[data < 0.1] = 0.0  # as testing.dummy.blob_volume: the bodies dominate the intensity percentiles
    return Volume(data * 1000.0, affine), centres


def dummy_labeler() -> Any:
    """A labeler with the dummy network (``testing.dummy``): labels the synthetic bodies with no trained model."""
    from ..pipeline import Labeler
    from .dummy import BlobNet, dummy_config

    return Labeler(dummy_config(), BlobNet())


def session_for(inputs: list[Path], labels_dir: Path, reviewer: str = "tester") -> ReviewSession:
    """A review session of ``inputs`` (named by their file or folder names) labeled by :func:`dummy_labeler`."""
    from ..review import prepare_scans

    names = [p.name.removesuffix(".gz").removesuffix(".nii") for p in inputs]
    scans, images, failures = prepare_scans(inputs, names, labels_dir, dummy_labeler)
    if failures:
        raise AssertionError(f"cannot prepare {failures}")
    return ReviewSession(scans, reviewer, images)


def server_headers(server: ReviewServer, token: bool = True) -> dict[str, str]:
    """The headers every request to ``server`` needs: the loopback ``Host`` and (unless ``token`` is false) the
    session token in ``X-Spinelabel-Token``."""
    host, port = str(server.server_address[0]), int(server.server_address[1])
    return {"Host": f"{host}:{port}", **({"X-Spinelabel-Token": server.token} if token else {})}


def request(server: ReviewServer, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, token: bool = True) -> tuple[Any, bytes]:
    """One HTTP request to a review server, with the loopback Host header it requires; (response, body).

    The server's token goes in the ``X-Spinelabel-Token`` header unless ``token`` is false.
    """
    host, port = str(server.server_address[0]), int(server.server_address[1])
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.request(method, path, body=body, headers={**server_headers(server, token), **(headers or {})})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response, data
