"""The review page driven in headless Chromium (Debian's chromium + chromium-driver, through Selenium).

Synthetic scans labeled by the dummy network, so no trained model and no
shared data are needed. Without Chromium the tests skip with the reason,
except under CI (``CI=true``), where ``.ci/run`` installs it and a missing
browser is a failure.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from spinelabel.io.dicom_write import write_dicom_series
from spinelabel.testing.review import blob_series_volume, chromium_missing, headless_chromium, serving, session_for

_MISSING = chromium_missing()
if _MISSING and os.environ.get("CI") == "true":
    pytest.fail(f"CI installs chromium for these tests, but: {_MISSING}", pytrace=False)
pytestmark = pytest.mark.skipif(_MISSING is not None, reason=f"browser tests need headless Chromium: {_MISSING}")

#: Seconds to wait for the page to react (a loaded 2-core machine is slow).
WAIT_S = 30
#: Pixels a label is dragged across the screen.
DRAG_PX = 40


def _series(tmp_path, name: str, n: int = 5):
    volume, _ = blob_series_volume((96, 96, 9), (2.0, 2.0, 4.0), n=n)
    folder = tmp_path / name
    write_dicom_series(volume, folder)
    return folder


def _wait(driver, script: str, value):
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT_S).until(lambda d: d.execute_script(f"return {script}") == value)


def _open(driver, url: str) -> None:
    driver.get(url)
    _wait(driver, "document.body.dataset.ready", "1")


def _markers(driver) -> list:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, "#labels .marker")


def _press(driver, keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(keys).perform()


def test_move_rename_add_delete_and_accept_saves_json_and_sr(tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from spinelabel.io.dicom_label_read import import_dicom_annotations

    series, labels = _series(tmp_path, "series"), tmp_path / "labels"
    session = session_for([series], labels)
    before = json.loads((labels / "series.json").read_text())
    names = [v["label"] for v in before["vertebrae"]]
    with serving(session) as server, headless_chromium() as driver:
        _open(driver, server.url)
        markers = _markers(driver)
        assert [m.get_attribute("data-label") for m in markers] == names
        for m, v in zip(markers, before["vertebrae"]):  # confidence shown; low ones stand out
            assert f"{v['confidence']:.2f}" in m.text
            assert ("low" in m.get_attribute("class").split()) == (v["confidence"] < 0.5)
        scale = driver.execute_script("return state.scale")  # screen px per mm
        ActionChains(driver).drag_and_drop_by_offset(markers[0], DRAG_PX, 0).perform()
        _markers(driver)[1].click()
        Select(driver.find_element(By.ID, "rename-to")).select_by_value("T13")
        driver.find_element(By.ID, "rename").click()
        _markers(driver)[2].click()
        _press(driver, "\ue017")  # Delete
        Select(driver.find_element(By.ID, "add-name")).select_by_value("T12")
        driver.find_element(By.ID, "add").click()
        ActionChains(driver).move_to_element_with_offset(driver.find_element(By.ID, "image"), 0, -60).click().perform()
        assert "4 unsaved" in driver.find_element(By.ID, "pending").text
        _press(driver, "a")  # T13 renamed below the first name: out of head-to-foot order, not saved at once
        _wait(driver, "document.getElementById('message').textContent.includes('press a again')", True)
        assert "out of order" in driver.find_element(By.ID, "message").text
        assert json.loads((labels / "series.json").read_text()) == before
        _press(driver, "a")  # the reviewer confirms: saved as it is
        _wait(driver, "document.body.dataset.saved", "1")
        assert driver.find_element(By.ID, "progress").text == "1 of 1 reviewed"
    saved = json.loads((labels / "series.json").read_text())
    changes = saved["review"]["events"][-1]["changes"]
    assert saved["review"]["status"] == "corrected"
    assert [c["op"] for c in changes] == ["move", "rename", "delete", "add"]
    moved = np.subtract(changes[0]["to_mm"], changes[0]["from_mm"])
    assert np.linalg.norm(moved) == pytest.approx(DRAG_PX / scale, rel=0.1)
    assert changes[1] == {"op": "rename", "from": names[1], "to": "T13"} and changes[2]["label"] == names[2]
    expected = {"T12", "T13", names[0], *names[3:]}
    assert {v["label"] for v in saved["vertebrae"]} == expected
    points = import_dicom_annotations([series, labels / "series.sr.dcm"]).annotations[0].points
    assert set(points) == expected
    assert np.allclose(points[names[0]], changes[0]["to_mm"], atol=0.05)


def test_keyboard_view_controls_and_plain_accept(tmp_path):
    from selenium.webdriver.common.by import By

    folders = [_series(tmp_path, "a"), _series(tmp_path, "b", n=4)]
    labels = tmp_path / "labels"
    session = session_for(folders, labels)
    with serving(session) as server, headless_chromium() as driver:
        _open(driver, server.url)
        first = driver.execute_script("return document.body.dataset.scan")
        _press(driver, "n")
        _wait(driver, "document.body.dataset.scan", ({"a", "b"} - {first}).pop())
        _press(driver, "p")
        _wait(driver, "document.body.dataset.scan", first)
        k, n = (int(x) for x in driver.find_element(By.ID, "slice-text").text.split(" / "))
        _press(driver, "\ue015")  # arrow down: next slice
        _wait(driver, "document.getElementById('slice-text').textContent", f"{min(k + 1, n)} / {n}")
        width = driver.execute_script("return document.getElementById('image').width")
        _press(driver, "+")
        _wait(driver, f"document.getElementById('image').width > {width}", True)
        pixel = "return document.getElementById('image').getContext('2d').getImageData(arguments[0], arguments[1], 1, 1).data[0]"
        centre = driver.execute_script("return toScreen(state.work.get(state.current).labels[0]).map(Math.round)")
        bright = driver.execute_script(pixel, *centre)
        assert bright > 0
        driver.execute_script(  # a narrow window at the top of the range: all but the brightest voxels turn black
            "const w = document.getElementById('window'), l = document.getElementById('level');"
            "w.value = w.min; l.value = l.max; l.dispatchEvent(new Event('input'))")
        _wait(driver, f"document.getElementById('image').getContext('2d').getImageData({centre[0]}, {centre[1]}, 1, 1).data[0] < {bright}", True)
        _press(driver, "a")
        _wait(driver, "document.body.dataset.saved", "1")
        _wait(driver, "document.body.dataset.scan", ({"a", "b"} - {first}).pop())  # on to the scan still to review
        assert driver.find_element(By.ID, "progress").text == "1 of 2 reviewed"
        statuses = [li.get_attribute("data-status") for li in driver.find_elements(By.CSS_SELECTOR, "#worklist li")]
        assert statuses == ["unreviewed", "accepted"]  # reviewed scans go to the end of the worklist
    saved = json.loads((labels / f"{first}.json").read_text())
    assert saved["review"]["status"] == "accepted" and saved["review"]["events"][0]["changes"] == []


def test_warnings_show_their_codes_and_a_doubted_count_leads_the_worklist(tmp_path):
    from selenium.webdriver.common.by import By

    series, labels = [_series(tmp_path, "a"), _series(tmp_path, "b")], tmp_path / "labels"
    session_for(series, labels)
    doc = json.loads((labels / "b.json").read_text())
    doc.update(warnings=["no anchor vertebra labeled", "slices sheared"], warning_codes=["no-anchor", "sheared-grid"])
    (labels / "b.json").write_text(json.dumps(doc))
    with serving(session_for(series, labels)) as server, headless_chromium() as driver:
        _open(driver, server.url)
        first = driver.find_elements(By.CSS_SELECTOR, "#worklist li")[0]
        assert first.find_element(By.CSS_SELECTOR, ".name").text == "b" and "check the count" in first.text
        _wait(driver, "document.body.dataset.scan", "b")  # the first of the worklist is opened
        items = driver.find_elements(By.CSS_SELECTOR, "#warnings li")
        assert [li.text for li in items] == ["no anchor vertebra labeled [no-anchor]", "slices sheared [sheared-grid]"]
        assert [li.get_attribute("data-concern") for li in items] == ["count", "input"]


def test_rename_to_its_own_name_is_not_offered_and_labels_of_another_series_are_refused(tmp_path):
    import shutil

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    series, labels = [_series(tmp_path, "a"), _series(tmp_path, "b")], tmp_path / "labels"
    session_for(series, labels)
    shutil.copy(labels / "a.json", labels / "b.json")  # b's name now holds the labels of series a
    with serving(session_for(series, labels)) as server, headless_chromium() as driver:
        _open(driver, server.url)
        assert driver.execute_script("return document.body.dataset.scan") == "a"
        marker = _markers(driver)[0]
        name = marker.get_attribute("data-label")
        marker.click()
        rename = driver.find_element(By.ID, "rename")
        assert driver.find_element(By.ID, "rename-to").get_attribute("value") == name and not rename.is_enabled()
        Select(driver.find_element(By.ID, "rename-to")).select_by_value("T13" if name != "T13" else "T12")
        assert rename.is_enabled()
        driver.find_elements(By.CSS_SELECTOR, "#worklist li")[1].click()
        _wait(driver, "document.getElementById('message').textContent.includes('holds the labels of DICOM series')",
              True)
        assert driver.execute_script("return document.body.dataset.scan") == "a"  # still on the scan shown
    assert json.loads((labels / "b.json").read_text()) == json.loads((labels / "a.json").read_text())


def test_a_held_key_a_double_accept_or_ctrl_a_accepts_only_the_scan_shown(tmp_path):
    """Holding "a" for 1.5 s accepted the scan shown and then the next, never seen; Ctrl+A accepted a scan; a double
    click on Accept recorded two events."""
    from selenium.webdriver.common.by import By

    folders = [_series(tmp_path, "a"), _series(tmp_path, "b", n=4), _series(tmp_path, "c", n=3)]
    labels = tmp_path / "labels"
    session = session_for(folders, labels)
    with serving(session) as server, headless_chromium() as driver:
        _open(driver, server.url)
        first = driver.execute_script("return document.body.dataset.scan")
        driver.execute_script("window.dispatchEvent(new KeyboardEvent('keydown', {key: 'a', ctrlKey: true}))")
        driver.execute_script("window.dispatchEvent(new KeyboardEvent('keydown', {key: 'a'}))")  # a held "a": the press
        _wait(driver, "document.body.dataset.saved", "1")
        _wait(driver, "state.saving", False)
        driver.execute_script(  # ... and its repeats, arriving once the next scan is shown
            "for (let i = 0; i < 20; i++) window.dispatchEvent(new KeyboardEvent('keydown', {key: 'a', repeat: true}));")
        driver.execute_script("window.dispatchEvent(new KeyboardEvent('keydown', {key: 'a', ctrlKey: true}))")
        second = driver.execute_script("return document.body.dataset.scan")
        assert second != first
        driver.execute_script("document.getElementById('accept').click(); document.getElementById('accept').click();")
        _wait(driver, "document.body.dataset.saved", "2")
        _wait(driver, "state.saving", False)
        assert driver.find_element(By.ID, "progress").text == "2 of 3 reviewed"
    events = {name: json.loads((labels / f"{name}.json").read_text()).get("review", {}).get("events", [])
              for name in ("a", "b", "c")}
    assert sorted(len(e) for e in events.values()) == [0, 1, 1] and not events[({"a", "b", "c"} - {first, second}).pop()]


def test_a_label_dragged_past_the_image_edge_stays_on_it_and_the_save_goes_through(tmp_path):
    """A drag that ended off the image recorded a point outside it: every later save was refused until a reload."""
    series, labels = _series(tmp_path, "series"), tmp_path / "labels"
    session = session_for([series], labels)
    with serving(session) as server, headless_chromium() as driver:
        _open(driver, server.url)
        last = _markers(driver)[-1]
        name = last.get_attribute("data-label")
        driver.execute_script(  # mouse events far below and right of the image (a pointer cannot leave the window)
            "const m = arguments[0], r = m.getBoundingClientRect(), x = r.left + 2, y = r.top + 2;"
            "m.dispatchEvent(new MouseEvent('mousedown', {clientX: x, clientY: y, bubbles: true}));"
            "window.dispatchEvent(new MouseEvent('mousemove', {clientX: x + 5000, clientY: y + 5000}));"
            "window.dispatchEvent(new MouseEvent('mouseup', {clientX: x + 5000, clientY: y + 5000}));", last)
        _press(driver, "a")
        _wait(driver, "document.body.dataset.saved", "1")
        shape = driver.execute_script("return state.meta.shape")
    saved = json.loads((labels / "series.json").read_text())
    (move,) = saved["review"]["events"][-1]["changes"]
    assert move["op"] == "move" and move["label"] == name
    moved = next(v for v in saved["vertebrae"] if v["label"] == name)
    assert np.allclose(moved["voxel"][:2], [shape[2] - 1, shape[1] - 1], atol=0.6)  # on the last row and column


def test_scans_and_labels_take_the_keyboard_focus(tmp_path):
    """Without a mouse: Tab reaches the worklist's scans (Enter opens one) and the labels (focus selects, Delete)."""
    from selenium.webdriver.common.by import By

    folders, labels = [_series(tmp_path, "a"), _series(tmp_path, "b", n=4)], tmp_path / "labels"
    session = session_for(folders, labels)
    with serving(session) as server, headless_chromium() as driver:
        _open(driver, server.url)
        first = driver.execute_script("return document.body.dataset.scan")
        items = driver.find_elements(By.CSS_SELECTOR, "#worklist li")
        other = next(li for li in items if li.find_element(By.CSS_SELECTOR, ".name").text != first)
        assert other.get_attribute("tabindex") == "0"
        driver.execute_script("arguments[0].focus()", other)
        _press(driver, "\ue007")  # Enter
        _wait(driver, "document.body.dataset.scan", ({"a", "b"} - {first}).pop())
        names = [m.get_attribute("data-label") for m in _markers(driver)]
        _press(driver, "\ue004")  # Tab, from the worklist item onward, until a label has the focus
        for _ in range(30):
            if driver.execute_script("return document.activeElement.classList.contains('marker')"):
                break
            _press(driver, "\ue004")
        focused = driver.execute_script("return document.activeElement.dataset.label")
        assert focused in names and driver.execute_script("return state.selected") == focused
        assert driver.find_element(By.ID, "selected").text == focused
        other = next(m for m in _markers(driver) if m.get_attribute("data-label") != focused)
        other_name = other.get_attribute("data-label")
        other.click()  # the mouse picks another label while the keyboard's focus is elsewhere
        assert driver.execute_script("return state.selected") == other_name
        assert driver.execute_script("return document.activeElement.dataset.label") == other_name
        _press(driver, "\ue017")  # Delete: the label the mouse picked, not the one focused before
        assert [m.get_attribute("data-label") for m in _markers(driver)] == [n for n in names if n != other_name]
        assert "1 unsaved" in driver.find_element(By.ID, "pending").text
