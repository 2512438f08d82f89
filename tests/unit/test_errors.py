"""The one-line messages of spinelabel.errors.one_line, shared by the CLI, batches, models and readers."""

from spinelabel.errors import EXCEPTION_MESSAGE_LIMIT, InputError, one_line


def test_whitespace_runs_become_one_space():
    assert one_line("a\n  b\tc\r\n") == "a b c"


def test_control_characters_are_escaped_not_passed_through():
    assert one_line("x\x00y\x1b[31m\u200bz") == "x\\x00y\\x1b[31m\\u200bz"


def test_a_message_string_is_kept_whole_and_may_be_empty():
    assert one_line("z" * 5000) == "z" * 5000
    assert one_line("  \n") == ""


def test_an_exception_is_cut_and_never_empty():
    text = one_line(ValueError("w " * 1000))
    assert len(text) == EXCEPTION_MESSAGE_LIMIT and text.endswith("...")
    assert one_line(ValueError("")) == "ValueError"
    assert one_line(OSError("disk\nfull")) == "disk full"


def test_the_command_line_reports_control_characters_escaped(capsys, monkeypatch):
    import spinelabel.cli as cli

    def bad_input(**kwargs):
        raise InputError("corrupt\nvalue \x1b]0;title\x07 here " + "z" * 400)

    monkeypatch.setattr(cli, "app", bad_input)
    code = cli.main(["label"])
    err = capsys.readouterr().err
    assert code == 1 and err == "spinelabel: error: corrupt value \\x1b]0;title\\x07 here " + "z" * 400 + "\n"


def test_the_batch_reason_is_never_empty():
    from spinelabel.batch import _one_line

    assert _one_line(" \n ") == "failed"
    assert _one_line("a\x00\nb") == "a\\x00 b"
