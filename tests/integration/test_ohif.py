"""Our SR in a real web viewer: OHIF, served against the test Orthanc, in headless Chromium.

A sagittal series (a real lumbar scan from the shared data, resampled to 1 x 1 x
4 mm DICOM slices; a synthetic phantom without the shared data) is labelled by
``spinelabel label`` with ``--dicom-sr --gsps``; the images, the SR and the GSPS
are stored in Orthanc; OHIF (``@ohif/app``'s prebuilt build, fetched with npm into
a cache outside the repository) opens the study, and the SR is loaded into the
viewport. The test steps through every measurement with the viewport's arrows
and checks that OHIF draws each labelled level at its point.

Slow (about a minute; OHIF renders with a software rasteriser) but run by
``.ci/run``. Skipped, with the reason, only when a tool cannot be had: Orthanc,
Chromium/chromedriver/Selenium, or npm to fetch OHIF.

``SPINELABEL_OHIF_SCREENSHOT=docs/ohif.png`` keeps the screenshot (the one in docs/).
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests

from spinelabel.cli import main
from spinelabel.demo import DEMO_CASE, find_shared_data
from spinelabel.geometry import Volume
from spinelabel.io import load_image
from spinelabel.io.dicom_label_write import write_sr
from spinelabel.io.dicom_write import write_dicom_series
from spinelabel.review.edits import result_of
from spinelabel.testing.clinical import clinical_series_volume
from spinelabel.testing.ohif import OhifUnavailable, install_ohif, serve_ohif
from spinelabel.testing.review import chromium_missing
from spinelabel.warning_codes import LabelWarning

pytestmark = pytest.mark.slow

#: Seconds to wait for OHIF (first load compiles about 10 MB of JavaScript on a loaded 2-core machine).
WAIT_S = 300
#: Double-clicks on the SR before giving up (each waits WAIT_S / LOAD_TRIES for the labels).
LOAD_TRIES = 3
#: Starts of Chromium before giving up.
BROWSER_TRIES = 2
#: Seconds OHIF gets to jump to the next measurement and draw it.
STEP_S = 5
#: Browser window: big enough for the study browser and a readable viewport.
WINDOW = (1400, 1000)
SERIES_MM = (1.0, 4.0)  # in-plane pixel, slice thickness of the clinical-style series


@pytest.fixture(scope="module")
def ohif_dist():
    missing = chromium_missing()
    if missing:
        pytest.skip(f"the OHIF check needs headless Chromium: {missing}")
    try:
        return install_ohif()
    except OhifUnavailable as exc:
        pytest.skip(f"the OHIF viewer cannot be installed: {exc}")


def _volume() -> Volume:
    data = find_shared_data()
    image = data / "lumbar-mr" / DEMO_CASE / "image.nii.gz" if data else None
    if image is not None and image.is_file():
        return load_image([image]).volume
    from spinelabel.synthetic import SyntheticSpec, synthesize_spine

    return synthesize_spine(SyntheticSpec(), np.random.default_rng(0))[0]


@pytest.fixture(scope="module")
def own_orthanc(tmp_path_factory):
    """A private Orthanc for this module: the study stored here must not appear in other tests' harvests."""
    from spinelabel.testing.orthanc import orthanc_for_tests

    yield from orthanc_for_tests(tmp_path_factory.mktemp("orthanc-ohif"))


@pytest.fixture(scope="module")
def labelled_study(tmp_path_factory):
    """A clinical-style series labelled by the CLI: (folder, images, SR, GSPS, result JSON).

    The SR is written once more with a warning added, so that OHIF is shown
    the warnings' container too (``write_sr``), whatever the model says.
    """
    root = tmp_path_factory.mktemp("ohif-study")
    files = write_dicom_series(clinical_series_volume(_volume(), *SERIES_MM), root / "series",
                               series_description="T2 SAG", patient_id="OHIF1", patient_name="TEST^Ohif",
                               series_number=3)  # fmt: skip
    sr, gsps, result = root / "labels.sr.dcm", root / "labels.gsps.dcm", root / "labels.json"
    assert main(["label", str(root / "series"), "-o", str(result), "--dicom-sr", str(sr), "--gsps", str(gsps)]) == 0
    doc = json.loads(result.read_text())
    labelled = result_of(doc)
    warned = replace(labelled, warnings=[*labelled.warnings, LabelWarning("no-anchor", "no anchor vertebra labeled")])
    write_sr(warned, load_image(root / "series").dicom, sr)
    return files, sr, gsps, doc


def _start_browser(stack: ExitStack):
    """A headless Chromium driver that does not wait for page loads; a second try when Chromium is slow to start."""
    from selenium import webdriver
    from selenium.common.exceptions import SessionNotCreatedException
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or ""
    options.page_load_strategy = "none"  # OHIF's load event can take minutes on a loaded machine; we wait for elements
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={WINDOW[0]},{WINDOW[1]}",
                "--hide-scrollbars", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"):  # WebGL in software
        options.add_argument(arg)
    for attempt in range(BROWSER_TRIES):
        try:
            driver = webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=options)
        except SessionNotCreatedException:
            if attempt == BROWSER_TRIES - 1:
                raise
            continue
        stack.callback(driver.quit)
        return driver
    raise AssertionError("unreachable")


def _store(server, paths: list[Path]) -> None:
    for path in paths:
        answer = requests.post(f"{server.url}/instances", data=path.read_bytes(),
                               auth=(server.username, server.password), timeout=60)  # fmt: skip
        answer.raise_for_status()


def _wait(driver, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S, poll_frequency=1.0).until(condition, message=f"OHIF did not {what}")


def _open_sr(driver) -> None:
    """Double-click the SR in the study browser (after dismissing the first-visit tour) and decline tracking."""
    from selenium.common.exceptions import ElementNotInteractableException, TimeoutException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def sr_thumbnail(d):
        items = d.find_elements(By.CSS_SELECTOR, "[data-cy=study-browser-thumbnail-no-image]")
        return next((e for e in items if e.text.startswith("SR")), None)

    thumbnail = _wait(driver, sr_thumbnail, "list the SR in the study browser")
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-cy=viewport-pane] canvas"), "show the series")
    for _ in range(LOAD_TRIES):  # a double-click while OHIF is still busy can go unheard
        for button in driver.find_elements(By.XPATH, "//*[normalize-space(text())='Skip all']"):
            try:  # the tour's button can be in the page but not (yet, or no longer) clickable
                button.click()
            except ElementNotInteractableException:
                pass
        ActionChains(driver).double_click(sr_thumbnail(driver) or thumbnail).perform()
        try:
            WebDriverWait(driver, WAIT_S / LOAD_TRIES, poll_frequency=1.0).until(_drawn_text)
            break
        except TimeoutException:
            continue
    _wait(driver, _drawn_text, "draw the SR's labels")
    for button in driver.find_elements(By.XPATH, "//button[normalize-space()='No']"):
        button.click()  # "continue tracking measurements?": viewing only


def _drawn_text(driver) -> str:
    """The text of the annotations OHIF draws over the image (an SVG layer)."""
    from selenium.webdriver.common.by import By

    return " | ".join(t.get_attribute("textContent") for t in driver.find_elements(By.CSS_SELECTOR, "svg text"))


def _next_measurement(driver) -> None:
    """Click the viewport's "next measurement" arrow and give OHIF time to jump and draw."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    before = (_drawn_text(driver), _instance(driver))
    driver.find_element(By.CSS_SELECTOR, "[data-cy=viewport-action-arrows-right]").click()
    try:  # the next label may lie on the same slice: then nothing changes
        WebDriverWait(driver, STEP_S).until(lambda d: (_drawn_text(d), _instance(d)) != before)
    except TimeoutException:
        pass


def _instance(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, "[data-cy=viewport-overlay-bottom-right]").text


def _step_through(driver, n: int) -> list[tuple[str, str]]:
    """(drawn text, instance shown) at each of n measurements; ends back at the first."""
    seen = []
    for _ in range(n):
        seen.append((_drawn_text(driver), _instance(driver)))
        _next_measurement(driver)
    return seen


def _site(label: str) -> str | None:
    """The finding-site meaning OHIF shows for a level (see dicom_label_write._finding_site)."""
    if label == "S1":
        return "Sacrum"
    return f"{label} vertebra" if label[0] in "CTL" and label not in ("L6", "T13") else None


def test_ohif_shows_our_sr_points_on_the_series(ohif_dist, own_orthanc, labelled_study, tmp_path):
    files, sr, gsps, result = labelled_study
    _store(own_orthanc, [*files, sr, gsps])
    study = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    labels = [v["label"] for v in result["vertebrae"]]
    assert len(labels) >= 5

    with serve_ohif(ohif_dist, own_orthanc.dicomweb_url, own_orthanc.username, own_orthanc.password) as base:
        with ExitStack() as stack:
            driver = _start_browser(stack)
            driver.get(f"{base}/viewer?StudyInstanceUIDs={study}")
            try:
                _open_sr(driver)
            finally:
                driver.save_screenshot(str(tmp_path / "opened.png"))  # what OHIF showed, kept for a failure
            seen = _step_through(driver, len(labels))
            busiest = max(range(len(seen)), key=lambda i: seen[i][0].count("confidence"))
            for _ in range(busiest):  # the slice with the most labels, for the picture
                _next_measurement(driver)
            shot = tmp_path / "ohif.png"
            driver.save_screenshot(str(shot))

    keep = os.environ.get("SPINELABEL_OHIF_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)
    drawn = " | ".join(text for text, _ in seen)
    for label in labels:
        site = _site(label)
        if site is not None:
            assert f"363698007: {site}" in drawn, f"{label} not drawn: {seen}"
    assert max(text.count("Vertebra label confidence") for text, _ in seen) >= 2, seen  # several points per slice
