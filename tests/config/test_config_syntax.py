"""strongSwan settings syntax: sections, values, quoting, comments, includes, references, errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quickike.control.config import ConfigError, load_config_text, parse_file, parse_text
from quickike.control.config.syntax import MAX_INCLUDE_DEPTH, MAX_NESTING


def tree(text: str) -> dict[str, object]:
    return parse_text(text).root.to_dict()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# -- sections and values ------------------------------------------------------------


def test_nested_sections_and_key_values() -> None:
    text = """
a = b
section-one {
    somevalue = asdf
    subsection {
        othervalue = xxx
    }
    # yei, a comment
    yetanother = zz
}
section-two {
    x = 12
}
"""
    assert tree(text) == {
        "a": "b",
        "section-one": {
            "somevalue": "asdf",
            "subsection": {"othervalue": "xxx"},
            "yetanother": "zz",
        },
        "section-two": {"x": "12"},
    }


def test_every_node_knows_file_and_line() -> None:
    root = parse_text("a = 1\n\nsec {\n  b = 2\n}\n", name="x.conf").root
    sec = root.sections["sec"]
    assert (root.settings["a"].file, root.settings["a"].line) == ("x.conf", 1)
    assert sec.where == "x.conf:3"
    assert sec.settings["b"].where == "x.conf:4"


def test_value_runs_to_end_of_line_with_spaces_and_commas_joined_by_one_space() -> None:
    t = tree("k = aes128-sha256-x25519,   aes256gcm16-prfsha384 , default\nv = a \t  b\n")
    assert t["k"] == "aes128-sha256-x25519, aes256gcm16-prfsha384 , default"
    assert t["v"] == "a b"


def test_brace_on_next_line_and_closing_brace_after_value() -> None:
    assert tree("sec\n{\n a = b }\nother { }") == {"sec": {"a": "b"}, "other": {}}


def test_one_line_section() -> None:
    assert tree("s { a = 1 }") == {"s": {"a": "1"}}


def test_empty_section_and_cleared_value() -> None:
    root = parse_text("empty {\n}\nk =\nq = # comment only\n").root
    assert root.sections["empty"].to_dict() == {}
    assert root.settings["k"].value is None
    assert root.settings["q"].value is None


def test_comments_anywhere_but_inside_quotes() -> None:
    t = tree('# head\na = b # tail\nc = "x # not a comment" # comment\n  # indented { }\n')
    assert t == {"a": "b", "c": "x # not a comment"}


def test_quoted_string_escapes() -> None:
    t = tree(r'a = "tab\there\nnl \"q\" back\\slash \x"' + "\n")
    assert t["a"] == 'tab\there\nnl "q" back\\slash x'


def test_quoted_string_spans_lines_and_escaped_newline_joins() -> None:
    root = parse_text('a = "first\nsecond"\nb = "one \\\ntwo"\nc = 3\n').root
    assert root.value("a") == "first\nsecond"
    assert root.value("b") == "one two"
    assert root.settings["c"].line == 5


def test_quoted_and_unquoted_parts_are_joined_like_charon() -> None:
    # strongSwan's own test configuration uses this secret: single quotes are
    # literal, double-quoted parts are separate words joined by one space.
    value = parse_text('secret = \'My "home" is my "castle"!\'\n').root.value("secret")
    assert value == "'My home is my castle !'"


def test_quoted_empty_string_is_not_cleared() -> None:
    assert parse_text('a = ""\n').root.value("a") == ""


def test_repeated_key_last_wins_at_first_position() -> None:
    root = parse_text("a = 1\nb = 2\na = 3\n").root
    assert list(root.settings) == ["a", "b"]
    assert root.settings["a"].value == "3"
    assert root.settings["a"].line == 3


def test_repeated_sections_are_merged() -> None:
    t = tree("s { a = 1\n x { y = 1 } }\nt { }\ns { b = 2\n a = 9\n x { z = 2 } }\n")
    assert t == {"s": {"a": "9", "x": {"y": "1", "z": "2"}, "b": "2"}, "t": {}}


def test_double_colon_in_names_means_colon() -> None:
    assert tree("c::\\\\log { a::b = 1 }") == {"c:\\\\log": {"a:b": "1"}}


def test_include_followed_by_equals_is_a_key() -> None:
    assert tree("include = yes\ninclude=no\n") == {"include": "no"}


def test_key_named_like_include_prefix() -> None:
    assert tree("includes = 1\n") == {"includes": "1"}


def test_crlf_line_endings() -> None:
    assert tree('s {\r\n  a = b\r\n  c = "d"\r\n}\r\n') == {"s": {"a": "b", "c": "d"}}


# -- includes ----------------------------------------------------------------------


def test_include_glob_relative_sorted_and_into_current_section(tmp_path: Path) -> None:
    write(tmp_path / "conf.d" / "b.conf", "second = b\norder = b\n")
    write(tmp_path / "conf.d" / "a.conf", "first = a\norder = a\n")
    write(tmp_path / "conf.d" / "ignored.txt", "nope = 1\n")
    main = write(tmp_path / "main.conf", "top {\n  include conf.d/*.conf\n  after = 1\n}\n")
    result = parse_file(main)
    assert result.root.to_dict() == {
        "top": {"first": "a", "order": "b", "second": "b", "after": "1"}
    }
    assert result.sources == [
        str(main.resolve()),
        str((tmp_path / "conf.d" / "a.conf").resolve()),
        str((tmp_path / "conf.d" / "b.conf").resolve()),
    ]
    origin = result.root.sections["top"].settings["order"]
    assert origin.file.endswith(os.path.join("conf.d", "b.conf")) and origin.line == 2


def test_include_is_relative_to_the_including_file(tmp_path: Path) -> None:
    write(tmp_path / "sub" / "inner" / "leaf.conf", "leaf = 1\n")
    write(tmp_path / "sub" / "mid.conf", "include inner/leaf.conf\n")
    main = write(tmp_path / "main.conf", "include sub/mid.conf\n")
    assert parse_file(main).root.to_dict() == {"leaf": "1"}


def test_included_sections_extend_and_replace(tmp_path: Path) -> None:
    write(tmp_path / "include.conf", "somevalue = asdf\nsubsection {\n othervalue = yyy\n}\n")
    write(tmp_path / "other.conf", "section-one {\n subsection {\n  othervalue = xxx\n }\n}\n")
    main = write(
        tmp_path / "main.conf",
        "section-one {\n somevalue = before include\n include include.conf\n}\ninclude other.conf\n",
    )
    assert parse_file(main).root.to_dict() == {
        "section-one": {"somevalue": "asdf", "subsection": {"othervalue": "xxx"}}
    }


def test_include_quoted_and_escaped_names(tmp_path: Path) -> None:
    write(tmp_path / "with space.conf", "a = 1\n")
    write(tmp_path / "other space.conf", "b = 2\n")
    main = write(tmp_path / "m.conf", 'include "with space.conf"\ninclude other\\ space.conf\n')
    assert parse_file(main).root.to_dict() == {"a": "1", "b": "2"}


def test_include_absolute_path(tmp_path: Path) -> None:
    leaf = write(tmp_path / "x" / "leaf.conf", "z = 1\n")
    main = write(tmp_path / "m.conf", f"include {leaf}\n")
    assert parse_file(main).root.to_dict() == {"z": "1"}


def test_include_glob_without_match_warns(tmp_path: Path) -> None:
    main = write(tmp_path / "m.conf", "a = 1\ninclude conf.d/*.conf\n")
    result = parse_file(main)
    assert result.root.to_dict() == {"a": "1"}
    assert [(w.line, "matches no files" in w.message) for w in result.warnings] == [(2, True)]


def test_missing_literal_include_is_an_error(tmp_path: Path) -> None:
    main = write(tmp_path / "m.conf", "a = 1\ninclude nothere.conf\n")
    with pytest.raises(ConfigError) as err:
        parse_file(main)
    assert (err.value.file, err.value.line) == (str(main), 2)
    assert "nothere.conf" in str(err.value)


def test_include_cycle_is_detected(tmp_path: Path) -> None:
    write(tmp_path / "a.conf", "x = 1\ninclude b.conf\n")
    write(tmp_path / "b.conf", "\n\ninclude a.conf\n")
    main = write(tmp_path / "main.conf", "include a.conf\n")
    with pytest.raises(ConfigError) as err:
        parse_file(main)
    assert err.value.file == str(tmp_path / "b.conf")
    assert err.value.line == 3
    assert "include cycle" in err.value.message
    assert str(err.value).startswith(f"{tmp_path / 'b.conf'}:3: include cycle")


def test_self_include_through_glob_is_a_cycle(tmp_path: Path) -> None:
    main = write(tmp_path / "all.conf", "a = 1\ninclude *.conf\n")
    with pytest.raises(ConfigError, match="include cycle"):
        parse_file(main)


def test_diamond_includes_are_not_cycles(tmp_path: Path) -> None:
    write(tmp_path / "common.conf", "c = 1\n")
    write(tmp_path / "l.conf", "include common.conf\n")
    write(tmp_path / "r.conf", "include common.conf\n")
    main = write(tmp_path / "m.conf", "include l.conf\ninclude r.conf\n")
    result = parse_file(main)
    assert result.root.to_dict() == {"c": "1"}
    assert len(result.sources) == 4


def test_include_nesting_limit(tmp_path: Path) -> None:
    depth = MAX_INCLUDE_DEPTH + 2
    for i in range(depth):
        write(tmp_path / f"f{i}.conf", f"k{i} = {i}\ninclude f{i + 1}.conf\n")
    write(tmp_path / f"f{depth}.conf", "end = 1\n")
    with pytest.raises(ConfigError, match="nested more than"):
        parse_file(tmp_path / "f0.conf")
    ok = tmp_path / "ok"
    for i in range(MAX_INCLUDE_DEPTH):
        write(ok / f"f{i}.conf", f"include f{i + 1}.conf\n")
    write(ok / f"f{MAX_INCLUDE_DEPTH}.conf", "end = 1\n")
    assert parse_file(ok / "f0.conf").root.to_dict() == {"end": "1"}


def test_error_inside_included_file_names_that_file(tmp_path: Path) -> None:
    inc = write(tmp_path / "bad.conf", "ok = 1\nversion 2\n")
    main = write(tmp_path / "m.conf", "s {\n include bad.conf\n}\n")
    with pytest.raises(ConfigError) as err:
        parse_file(main)
    assert (err.value.file, err.value.line) == (str(inc), 2)


def test_include_without_pattern_is_an_error() -> None:
    with pytest.raises(ConfigError, match="needs a file name") as err:
        parse_text("a = 1\ninclude \n")
    assert err.value.line == 2


def test_unreadable_main_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        parse_file(tmp_path / "missing.conf")


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    main = tmp_path / "m.conf"
    main.write_bytes(b"a = 1\nb = \xff\xfe\n")
    with pytest.raises(ConfigError, match="UTF-8") as err:
        parse_file(main)
    assert err.value.line == 2


# -- references ----------------------------------------------------------------------


def test_references_inherit_and_own_values_win() -> None:
    text = """
conn-defaults {
    version = 2
    proposals = default
    local { auth = pubkey }
}
child-defaults { esp_proposals = aes128gcm16 }
connections {
    conn-a : conn-defaults {
        proposals = aes256-sha256-x25519
        local { id = moon }
        children {
            net : child-defaults { local_ts = 10.1.0.0/16 }
        }
    }
    conn-c : connections.conn-a {
        remote_addrs = 192.0.2.1
    }
}
"""
    t = tree(text)["connections"]
    assert isinstance(t, dict)
    assert t["conn-a"] == {
        "proposals": "aes256-sha256-x25519",
        "local": {"id": "moon", "auth": "pubkey"},
        "children": {"net": {"local_ts": "10.1.0.0/16", "esp_proposals": "aes128gcm16"}},
        "version": "2",
    }
    assert t["conn-c"] == {"remote_addrs": "192.0.2.1", **t["conn-a"]}
    assert list(t["conn-a"]) == ["proposals", "version", "local", "children"]


def test_several_references_apply_left_to_right() -> None:
    t = tree("a { x = a\n y = a }\nb { x = b\n z = b }\nc : a, b { }\n")
    assert t["c"] == {"x": "a", "y": "a", "z": "b"}


def test_reference_list_may_span_lines() -> None:
    t = tree("a { x = 1 }\nb { y = 2 }\nc : a,\n    b\n{\n}\n")
    assert t["c"] == {"x": "1", "y": "2"}


def test_unknown_reference_warns() -> None:
    result = parse_text("c : nothere {\n a = 1 }\n", name="r.conf")
    assert result.root.to_dict() == {"c": {"a": "1"}}
    assert [str(w) for w in result.warnings] == ["r.conf:1: reference to unknown section 'nothere'"]


def test_reference_cycle_is_an_error() -> None:
    with pytest.raises(ConfigError, match="reference cycle") as err:
        parse_text("a : b { }\nb : a { }\n")
    assert err.value.line in (1, 2)
    with pytest.raises(ConfigError, match="reference cycle"):
        parse_text("outer {\n inner : outer { }\n}\n")


def test_reference_bomb_is_bounded() -> None:
    lines = ["s0 { k = v }"]
    lines += [f"s{i} : s{i - 1}, s{i - 1} {{ k{i} = v }}" for i in range(1, 40)]
    with pytest.raises(ConfigError, match="too many sections"):
        parse_text("\n".join(lines))


# -- syntax errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("a {\n b = 1\n", 1, "never closed"),
        ("x = 1\ns {\n t {\n }\n", 2, "never closed"),
        ("a = 1\n}\n", 2, "unexpected '}'"),
        ("s {\n}\n}\n", 3, "unexpected '}'"),
        ("conn {\n  version 2\n}\n", 2, "expected '=' or '{' after 'version'"),
        ("conn {\n  version\n}\n", 2, "expected '=' or '{' after 'version', found '}'"),
        ("lonely", 1, "found end of file"),
        ('a = 1\nb = "open\nmore\n', 2, "unterminated quoted string"),
        ('a = "x\\', 1, "unterminated quoted string"),
        ('"quoted" = 1\n', 1, "quotes are only allowed in values"),
        ("= 1\n", 1, "unexpected '='"),
        ("a {\n\n local = {\n auth = psk\n }\n}\n", 3, "open a section with 'local {'"),
        ("a : {\n}\n", 1, "expected the name of a section"),
        ("a : b c {\n}\n", 1, "expected ',' or '{'"),
        ('s {\n  include "x\n', 2, "unterminated"),
        (", = 1", 1, "unexpected ','"),
    ],
)
def test_syntax_errors_name_file_and_line(text: str, line: int, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_text(text, name="bad.conf")
    assert err.value.file == "bad.conf"
    assert err.value.line == line, str(err.value)
    assert needle in err.value.message
    assert str(err.value).startswith(f"bad.conf:{line}: ")


def test_nesting_limit() -> None:
    deep = "s {" * (MAX_NESTING + 1) + "}" * (MAX_NESTING + 1)
    with pytest.raises(ConfigError, match="nested more than"):
        parse_text(deep)
    ok = "s {" * MAX_NESTING + "a = 1" + "}" * MAX_NESTING
    assert parse_text(ok).root.find(".".join(["s"] * MAX_NESTING)) is not None


# -- robustness --------------------------------------------------------------------------

_SYNTAX_ALPHABET = st.sampled_from(
    [*'{}=#"\\:,.\n\t -', "include ", "connections", "children", "local", "a", "b", "1", "é"]
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(_SYNTAX_ALPHABET, max_size=80).map("".join) | st.text(max_size=200))
def test_random_text_raises_nothing_but_config_error(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    base = str(tmp_path_factory.getbasetemp() / "empty-include-dir")
    os.makedirs(base, exist_ok=True)
    for attempt in (parse_text, load_config_text):
        try:
            attempt(text, "random.conf", base)
        except ConfigError as exc:
            assert exc.file and exc.line >= 0
