"""Cross-language: the change review (``flagrail diff``) is one function of the core, so the
CLI's ``--json``, Python's ``flagrail.diff`` and Node's ``diff`` give the same review, and the
same messages for the same bad input. ``make test-cross`` runs it against the built CLI, the
installed wheel and the built addon."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

import flagrail
from flagrail import DocumentError, InvalidArgumentError

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "target" / "debug" / "flagrail"
AT = "2026-12-01T00:00:00Z"

NODE = r"""
const { diff } = require(process.argv[1])
const input = JSON.parse(require('node:fs').readFileSync(0, 'utf8'))
let out
try {
  out = { review: diff(input.old, input.new, input.options) }
} catch (err) {
  out = { error: { code: err.code, message: err.message, paths: (err.problems || []).map((p) => p.path) } }
}
process.stdout.write(JSON.stringify(out))
"""


def example() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((ROOT / "examples" / "flags.json").read_text())
    return document


def changed() -> tuple[dict[str, Any], dict[str, Any]]:
    """The example and a new revision: a new salt on `support-bot` (REBUCKET) and the default
    of `support-prompt` set to another variant (units on the default move)."""
    old = example()
    new = copy.deepcopy(old)
    new["revision"] = "2026-12-01.1"
    new["flags"]["support-bot"]["salt"] = "support-bot/2"
    prompt = new["flags"]["support-prompt"]
    others = [v for v in prompt["variants"] if v != prompt["default"]]
    prompt["default"] = others[0]
    return old, new


def node(old: Any, new: Any, options: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        ["node", "-e", NODE, str(ROOT / "bindings-node")],
        input=json.dumps({"old": old, "new": new, "options": options}),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(done.stdout)
    assert isinstance(result, dict)
    return result


def cli_json(tmp_path: Path, old: Any, new: Any, *extra: str) -> dict[str, Any]:
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(new))
    done = subprocess.run(
        [str(CLI), "diff", str(tmp_path / "old.json"), str(tmp_path / "new.json"), "--json", "--allow", "--at", AT, *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_cli_python_and_node_give_the_same_review(tmp_path: Path) -> None:
    old, new = changed()
    python = flagrail.diff(old, new, users=3000, seed=7, at=AT)
    assert python["units"] == 3000
    assert python["dangerous"] is True
    # The new salt re-buckets `support-bot`; `support-prompt`'s new default is also what its
    # kill switch serves, and it calls a model.
    assert [(d["code"], d["flag"]) for d in python["dangers"]] == [
        ("REBUCKET", "support-bot"),
        ("KILL_CALLS_MODEL", "support-prompt"),
    ]
    moved = {f["flag"]: f["moved"] for f in python["flags"]}
    assert 0 < moved["support-prompt"] < 3000
    assert node(old, new, {"users": 3000, "seed": 7, "at": AT}) == {"review": python}
    assert cli_json(tmp_path, old, new, "--users", "3000", "--seed", "7") == python
    # Another seed draws other units, so the counts differ.
    assert flagrail.diff(old, new, users=3000, seed=8, at=AT) != python


def test_a_given_population_is_reviewed_alike(tmp_path: Path) -> None:
    old, new = changed()
    units = [{"user_id": f"u-{i}", "plan": "pro" if i % 4 else "enterprise"} for i in range(500)]
    python = flagrail.diff(old, new, population=units, at=AT)
    assert python["units"] == 500
    assert node(old, new, {"population": units, "at": AT}) == {"review": python}
    (tmp_path / "units.jsonl").write_text("\n".join(json.dumps(u) for u in units))
    assert cli_json(tmp_path, old, new, "--population", str(tmp_path / "units.jsonl")) == python


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"users": 0}, "users must be a whole number from 1 to 1000000, got 0"),
        ({"users": 1_000_001}, "users must be a whole number from 1 to 1000000, got 1000001"),
        ({"seed": -1}, "seed must be a whole number from 0 to 2^53 - 1, got -1"),
        ({"population": [{"user_id": "a"}], "users": 10}, "population excludes users and seed: a given population is not drawn"),
        ({"population": []}, "population: no contexts"),
        ({"population": [{"user_id": "a"}, "b"]}, "population: context 2 is not a JSON object"),
    ],
)
def test_bad_options_give_one_message_in_both_languages(options: dict[str, Any], message: str) -> None:
    old, new = changed()
    with pytest.raises(InvalidArgumentError) as raised:
        flagrail.diff(old, new, at=AT, **options)
    assert str(raised.value) == message
    assert raised.value.code == "INVALID_ARGUMENT"
    assert node(old, new, {**options, "at": AT}) == {"error": {"code": "INVALID_ARGUMENT", "message": message, "paths": []}}


def test_a_bad_document_names_which_one_in_both_languages() -> None:
    old, new = changed()
    new["flags"]["support-bot"]["default"] = "no-such-variant"
    with pytest.raises(DocumentError) as raised:
        flagrail.diff(old, new, at=AT)
    paths = [p.path for p in raised.value.problems]
    assert paths and all(p.startswith("new.flags.support-bot") for p in paths), paths
    result = node(old, new, {"at": AT})
    assert result["error"]["code"] == "INVALID_DOCUMENT"
    assert result["error"]["paths"] == paths
    assert result["error"]["message"] == str(raised.value)
    with pytest.raises(DocumentError) as swapped:
        flagrail.diff(new, old, at=AT)
    assert all(p.path.startswith("old.") for p in swapped.value.problems)
