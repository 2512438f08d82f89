"""Helpers for tests and benchmarks: a throw-away Orthanc server, clinical-style test studies,
the dciodvfy validator, the OHIF viewer served locally.

Nothing here is used when labeling; it lives in the package so that both
``tests/`` and ``python -m benchmarks.…`` can import it without path tricks.
"""
