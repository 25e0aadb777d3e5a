"""One document, one verdict: the CLI, Python and Node loaders accept or reject alike.

Every case of the ``errors`` vector files (tests/vectors/index.json) and every document of the
``eval`` files is loaded through each entry of each language:

- Rust: ``target/debug/flagrail validate FILE`` (``make build-cli``), the text entry;
- Python: ``Flags.from_json(text)`` and, for a document that is an object, ``Flags.from_dict``;
- Node: ``Flags.fromJson(text)`` and ``Flags.fromObject(object)`` through
  ``tests/cross/node_verdicts.js`` (``make build-node``).

A verdict is "accepted" or the set of (path, code) of the problems. All of them must equal what
the vector says (an ``eval`` document must be accepted). A string document is JSON text: it goes
through the text entries only (a parsed value cannot carry duplicate keys or ``1.0``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

import flagrail

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(os.environ.get("FLAGRAIL_CLI", ROOT / "target" / "debug" / "flagrail"))
NODE_VERDICTS = Path(__file__).with_name("node_verdicts.js")
VECTORS = ROOT / "tests" / "vectors"

Verdict = Any  # "accepted" | list[tuple[str, str]] | ("error", code, message)

# A loader that does not give the vector's verdict yet, by (case id, loader): each is a known,
# reported gap, and the test fails when one is fixed (strict), so the entry gets removed.
KNOWN_GAPS: dict[tuple[str, str], str] = {}


def _cases() -> list[dict[str, Any]]:
    cases = []
    index = json.loads((VECTORS / "index.json").read_text())
    for entry in index["files"]:
        data = json.loads((VECTORS / entry["path"]).read_text())
        if entry["kind"] == "errors":
            for case in data["cases"]:
                want = sorted((p["path"], p["code"]) for p in case["problems"])
                cases.append({"id": case["id"], "document": case["document"], "want": want})
        elif entry["kind"] in ("eval", "state", "cache-key"):
            cases.append({"id": f"accepts:{entry['path']}", "document": data["document"], "want": "accepted"})
    examples = ROOT / "examples" / "flags.json"
    cases.append({"id": "accepts:examples/flags.json", "document": json.loads(examples.read_text()), "want": "accepted"})
    return cases


CASES = _cases()


def _text(document: Any) -> str:
    return document if isinstance(document, str) else json.dumps(document, ensure_ascii=False)


def _python(load: Any) -> Verdict:
    try:
        load()
    except flagrail.DocumentError as err:
        return sorted((p.path, p.code) for p in err.problems)
    except flagrail.FlagrailError as err:  # pragma: no cover - reported as a mismatch
        return ("error", err.code, str(err)[:300])
    return "accepted"


_PROBLEM = re.compile(r"^(?P<path>.*?): (?P<message>.*) \[(?P<code>[A-Z_]+)\]$")


def _cli(path: Path) -> Verdict:
    done = subprocess.run([str(CLI), "validate", str(path)], capture_output=True, text=True, timeout=120)
    if done.returncode == 0:
        return "accepted"
    problems = []
    for line in done.stderr.splitlines():
        match = _PROBLEM.match(line)
        if match and match["code"] not in ("INVALID_DOCUMENT",):
            path_text = "" if match["path"] == "(document)" else match["path"]
            problems.append((path_text, match["code"]))
    return sorted(problems) if problems else ("error", done.returncode, done.stderr[:300])


@pytest.fixture(scope="module")
def node_verdicts(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("verdicts")
    manifest = tmp / "cases.json"
    manifest.write_text(
        json.dumps(
            [
                {"text": _text(c["document"]), "object": None if isinstance(c["document"], str) else c["document"]}
                for c in CASES
            ],
            ensure_ascii=False,
        )
    )
    done = subprocess.run(["node", str(NODE_VERDICTS), str(manifest)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == len(CASES)
    return lines


def _node(raw: Any) -> Verdict:
    if raw is None or raw == "accepted" or (isinstance(raw, list) and raw[:1] == ["error"]):
        return raw if not isinstance(raw, list) else tuple(raw)
    return sorted((p, c) for p, c in raw)


@pytest.mark.parametrize("position", range(len(CASES)), ids=[c["id"] for c in CASES])
def test_every_loader_gives_the_vector_verdict(position: int, node_verdicts: list[dict[str, Any]], tmp_path: Path) -> None:
    case = CASES[position]
    document, want = case["document"], case["want"]
    text = _text(document)
    file = tmp_path / "flags.json"
    file.write_bytes(text.encode("utf-8"))
    got: dict[str, Verdict] = {
        "cli": _cli(file),
        "python.from_json": _python(lambda: flagrail.Flags.from_json(text)),
        "node.fromJson": _node(node_verdicts[position]["text"]),
    }
    if not isinstance(document, str):
        got["python.from_dict"] = _python(lambda: flagrail.Flags.from_dict(document))
        got["node.fromObject"] = _node(node_verdicts[position]["object"])
    wrong = {loader: verdict for loader, verdict in got.items() if verdict != want}
    gaps = {loader for (case_id, loader) in KNOWN_GAPS if case_id == case["id"]}
    assert set(wrong) == gaps, f"{case['id']}: want {want}, got {wrong}" + (
        f" (known gaps: {sorted(gaps)}; a fixed gap must leave KNOWN_GAPS)" if gaps else ""
    )
