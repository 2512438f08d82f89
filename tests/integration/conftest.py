"""Shared integration fixtures: a private Orthanc DICOMweb server for the session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def orthanc_server(tmp_path_factory):
    """A running Orthanc with the DICOMweb plugin and basic auth; stopped after the session.

    Skipped when Orthanc is not installed (``apt-get install orthanc
    orthanc-dicomweb``; ``.ci/run`` installs it). A server that is installed
    but does not start fails the tests that use it.
    """
    from spinelabel.testing.orthanc import orthanc_for_tests

    yield from orthanc_for_tests(tmp_path_factory.mktemp("orthanc"))


def pytest_collection_modifyitems(config, items):
    """Every test under tests/integration is marked ``integration`` (``-m "not integration"``: the fast unit run)."""
    for item in items:
        if "tests/integration/" in item.nodeid.replace("\\", "/") or item.nodeid.startswith("integration/"):
            item.add_marker(pytest.mark.integration)
