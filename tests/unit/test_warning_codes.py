"""Warning codes: the vocabulary, reading them back from a result document, and their documentation."""

from __future__ import annotations

from pathlib import Path

import pytest

from spinelabel.warning_codes import CODES, LabelWarning, codes, count_at_risk, count_note, document_warnings, from_document, texts

OUTPUT_FORMAT = Path(__file__).resolve().parents[2] / "docs" / "output-format.md"


def test_a_warning_has_a_known_code_and_reads_as_its_text():
    w = LabelWarning("no-anchor", "no anchor vertebra (S1) labeled")
    assert str(w) == w.text and w.line() == "no anchor vertebra (S1) labeled [no-anchor]" and w.concern == "count"
    with pytest.raises(ValueError, match="unknown warning code"):
        LabelWarning("no-such-code", "text")


def test_texts_and_codes_keep_the_order_and_only_count_concerns_put_the_count_at_risk():
    ws = [LabelWarning("sheared-grid", "a"), LabelWarning("low-confidence", "b")]
    assert texts(ws) == ["a", "b"] and codes(ws) == ["sheared-grid", "low-confidence"]
    assert not count_at_risk(ws) and count_at_risk([*ws, LabelWarning("anchor-rival", "c")])
    assert count_note(ws) == "" and count_note([LabelWarning("no-anchor", "c")]) == " - check the count (see the warnings)"


def test_a_document_without_codes_or_with_unknown_ones_reads_as_unspecified():
    assert from_document(["a"], None) == [LabelWarning("unspecified", "a")]
    assert from_document(["a", "b", "c"], ["no-anchor", "from-a-later-version", {"not": "a code"}]) == [
        LabelWarning("no-anchor", "a"), LabelWarning("unspecified", "b"), LabelWarning("unspecified", "c")]
    with pytest.raises(ValueError, match="2 warnings but 1 warning codes"):
        from_document(["a", "b"], ["no-anchor"])


def test_a_result_document_gives_its_warnings_or_says_why_not():
    assert document_warnings({"warnings": ["a"], "warning_codes": ["no-anchor"]}) == [LabelWarning("no-anchor", "a")]
    assert document_warnings({"vertebrae": []}) == []
    with pytest.raises(ValueError, match="must be lists"):
        document_warnings({"warnings": "a", "warning_codes": ["no-anchor"]})


def test_every_code_is_documented_with_its_concern():
    doc = OUTPUT_FORMAT.read_text()
    for code, (concern, _) in CODES.items():
        assert f"| `{code}` | {concern} |" in doc, code


def test_the_summary_line_says_when_to_check_the_count():
    import numpy as np

    from spinelabel.cli import _summary_line
    from spinelabel.results import LabelResult, Vertebra

    one = [Vertebra("L1", np.zeros(3), np.zeros(3), 0.9)]
    doubted = LabelResult("lumbar", "m", "0", one, [LabelWarning("level-offset", "x")])
    assert _summary_line(doubted) == "1 vertebrae: L1(0.90) - check the count (see the warnings)"
    assert _summary_line(LabelResult("lumbar", "m", "0", one, [LabelWarning("missed-level", "y")])) == "1 vertebrae: L1(0.90)"
