"""Every load error surfaces as the right exception class, with its code and every problem's path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flagrail import DocumentError, FlagrailError, Flags, Problem, SourceError
from flagrail.exceptions import InvalidArgumentError

# (document, every expected (path, code))
DOCUMENTS: dict[str, tuple[dict[str, Any], set[tuple[str, str]]]] = {
    "unknown-operator-and-variant": (
        {
            "flags": {
                "a": {
                    "variants": {"x": {}},
                    "default": "y",
                    "rules": [{"id": "r", "when": {"attr": "plan", "op": "equalz", "value": 1}, "serve": "x"}],
                }
            }
        },
        {("flags.a.default", "UNKNOWN_VARIANT"), ("flags.a.rules[0].when.op", "UNKNOWN_OPERATOR")},
    ),
    "cycle-unknown-field-empty-variants": (
        {
            "flags": {"a": {"variants": {}, "default": "x", "bogus": 1}},
            "segments": {"s": {"segment": "t"}, "t": {"segment": "s"}},
        },
        {
            ("segments.s", "SEGMENT_CYCLE"),
            ("segments.t", "SEGMENT_CYCLE"),
            ("flags.a.bogus", "UNKNOWN_FIELD"),
            ("flags.a.variants", "INVALID_VALUE"),
            ("flags.a.default", "UNKNOWN_VARIANT"),
        },
    ),
    "split-and-ramp": (
        {
            "flags": {
                "a": {
                    "variants": {"x": {}, "y": {}},
                    "default": "x",
                    "rules": [
                        {"split": [{"variant": "x", "percent": 50.0001}, {"variant": "z", "percent": 50}]},
                        {
                            "id": "ramp",
                            "ramp": {
                                "variant": "y",
                                "start": "nope",
                                "steps": [{"percent": 10, "hold": "1w"}, {"percent": 5}],
                            },
                        },
                    ],
                }
            }
        },
        {
            ("flags.a.rules[0].split[0].percent", "PERCENT_PRECISION"),
            ("flags.a.rules[0].split[1].variant", "UNKNOWN_VARIANT"),
            ("flags.a.rules[1].ramp.start", "INVALID_DATE"),
            ("flags.a.rules[1].ramp.steps[0].hold", "INVALID_DURATION"),
            ("flags.a.rules[1].ramp.steps[1].percent", "RAMP_NOT_INCREASING"),
        },
    ),
    "regex-and-semver": (
        {
            "flags": {
                "a": {
                    "variants": {"x": {}},
                    "default": "x",
                    "rules": [
                        {"when": {"attr": "v", "op": "matches", "value": "("}, "serve": "x"},
                        {"when": {"attr": "v", "op": "semver_gt", "value": "1.x"}, "serve": "x"},
                    ],
                }
            }
        },
        {("flags.a.rules[0].when.value", "INVALID_REGEX"), ("flags.a.rules[1].when.value", "INVALID_SEMVER")},
    ),
}


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
@pytest.mark.parametrize("loader", ["from_json", "from_dict", "from_file"])
def test_document_errors(name: str, loader: str, tmp_path: Path) -> None:
    document, expected = DOCUMENTS[name]
    with pytest.raises(DocumentError) as raised:
        if loader == "from_json":
            Flags.from_json(json.dumps(document))
        elif loader == "from_dict":
            Flags.from_dict(document)
        else:
            path = tmp_path / "flags.json"
            path.write_text(json.dumps(document))
            Flags.from_file(path)
    err = raised.value
    assert isinstance(err, FlagrailError) and isinstance(err, ValueError)
    assert err.code == "INVALID_DOCUMENT"
    assert {(p.path, p.code) for p in err.problems} == expected
    assert len(err.problems) == len(expected)
    message = str(err)
    assert f"({len(expected)} problem" in message
    for problem in err.problems:
        assert isinstance(problem, Problem)
        assert problem.message
        # The message lists every problem with its path, message and code.
        assert f"{problem.path}: {problem.message} [{problem.code}]" in message
        assert str(problem) == f"{problem.path}: {problem.message} [{problem.code}]"


@pytest.mark.parametrize(
    ("text", "code"),
    [("{\"flags\": ", "INVALID_JSON"), ("[]", "WRONG_TYPE"), ("", "INVALID_JSON"), ("null", "WRONG_TYPE")],
)
def test_whole_document_problems(text: str, code: str) -> None:
    with pytest.raises(DocumentError) as raised:
        Flags.from_json(text)
    (problem,) = raised.value.problems
    assert (problem.path, problem.code) == ("", code)
    assert "(document)" in str(raised.value)


def test_from_dict_of_a_non_mapping() -> None:
    with pytest.raises(DocumentError) as raised:
        Flags.from_dict(["not", "a", "document"])  # type: ignore[arg-type]
    assert [(p.path, p.code) for p in raised.value.problems] == [("", "WRONG_TYPE")]


def test_missing_file_is_a_source_error(tmp_path: Path) -> None:
    missing = tmp_path / "absent.json"
    with pytest.raises(SourceError) as raised:
        Flags.from_file(missing)
    err = raised.value
    assert isinstance(err, FlagrailError)
    assert not isinstance(err, DocumentError)
    assert err.code == "SOURCE_UNREACHABLE"
    assert err.source == str(missing)
    assert str(missing) in str(err)


def test_a_directory_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as raised:
        Flags.from_file(tmp_path)
    # A directory is never opened for reading (issue 14): named, not a generic read failure.
    assert raised.value.code == "NOT_REGULAR_FILE"


def test_poll_interval_must_be_positive(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps({"flags": {}}))
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(InvalidArgumentError) as raised:
            Flags.from_file(path, poll_interval=bad)
        assert raised.value.code == "INVALID_ARGUMENT"


def test_exception_classes_can_be_raised_by_users() -> None:
    err = DocumentError("boom", problems=[Problem("a.b", "WRONG_TYPE", "no")])
    assert err.code == "INVALID_DOCUMENT"
    assert err.problems == (Problem("a.b", "WRONG_TYPE", "no"),)
    assert SourceError("x").code == "SOURCE_UNREACHABLE"
    assert FlagrailError("x", code="CUSTOM").code == "CUSTOM"
