import pytest

from spinelabel.errors import InputError
from spinelabel.jsonfile import read_json


def test_read_json_returns_the_value(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{"vertebrae": [1, 2]}', encoding="utf-8")
    assert read_json(path) == {"vertebrae": [1, 2]}


@pytest.mark.parametrize(
    "content, expected",
    [(b'{"a": 1,', "not valid JSON (line 1"), (b"\xff\xfe\x00{", "not a text (UTF-8) JSON file"), (None, "cannot read"),
     (b"[" * 100_000 + b"]" * 100_000, "not valid JSON (nested too deeply)")],
)
def test_read_json_says_in_one_line_what_is_wrong(tmp_path, content, expected):
    path = tmp_path / "a.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as info:
        read_json(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message


def test_an_integer_too_large_for_a_float_is_no_finite_number():
    """``math.isfinite(10**400)`` raises OverflowError: a result holding such a position crashed its reader."""
    from spinelabel.jsonfile import is_finite_number

    assert [is_finite_number(x) for x in (1, 2.5, 10**400, float("nan"), True, "5", None)] == [
        True, True, False, False, False, False, False]


def test_parse_json_reports_deep_nesting_as_a_value_error():
    """``json.loads`` raises RecursionError, which every reader's ``except ValueError`` let through as a traceback."""
    from spinelabel.jsonfile import parse_json

    assert parse_json('{"a": [[1]]}') == {"a": [[1]]}
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_json("[" * 100_000 + "]" * 100_000)


def test_an_integer_of_more_digits_than_python_converts_is_said_in_our_words(tmp_path):
    import sys

    limit = sys.get_int_max_str_digits()
    if limit == 0:
        pytest.skip("this interpreter converts integers of any length")
    path = tmp_path / "a.json"
    path.write_text("1" * (limit + 1))
    with pytest.raises(InputError, match=r": not valid JSON \(a number too long to read\)$"):
        read_json(path)
