"""The review-page benchmark's server-alone timing: it must get through the session token."""

from benchmarks.review_page import _server_ms
from spinelabel.io.dicom_write import write_dicom_series
from spinelabel.testing.review import blob_series_volume, serving, session_for


def test_the_server_alone_timing_answers_every_request_with_the_token(tmp_path):
    volume, _ = blob_series_volume((64, 64, 5), (2.0, 2.0, 4.0))
    write_dicom_series(volume, tmp_path / "series")
    session = session_for([tmp_path / "series"], tmp_path / "labels")
    with serving(session, token="bench-token") as server:
        ms = _server_ms(server, session.meta(0)["start_slice"], loads=2)
    assert 0.0 < ms < 60_000.0
