"""Cross-language consistency: Rust, Python and Node make the same decision for every context.

The product promises that a user lands in the same bucket, with the same variant, reason and rule,
whichever language evaluates. This test generates well over 100,000 contexts deterministically
and evaluates each one three ways:

- Rust: ``target/debug/flagrail eval-batch DOCUMENT`` (``make build-cli``), JSON lines in and out;
- Python: the ``flagrail`` package installed in ``.venv`` (``make build-python``);
- Node: ``tests/cross/node_eval.js`` over ``bindings-node`` (``make build-node``).

Everything is batched (one process per language and document, never one per context). It stops
at the first difference in variant, reason, rule id or bucket and prints the context.

Documents: ``examples/flags.json`` and every ``eval`` document of ``tests/vectors/index.json``.
Contexts mix the literals of every condition and segment (and near misses of them, other types,
missing values) with units that are ASCII, non-ASCII, emoji, integers (including beyond 2^53 and
beyond 64 bits), empty, missing or of the wrong type, strings with a lone surrogate (Python and
Node must skip what reads them, as docs/bucketing.md §2 says; Rust strings cannot hold one, so
Rust gets a value of an unsupported type in their place, which it must treat the same way), at instants around every step of every ramp
(``support-bot`` starts 2026-11-21T09:00:00Z with 1/5/25/50/100 % held 24h/48h/72h/48h). The
generator must reach every rule of every document: a rule no context reaches fails the test.

``make test-cross`` runs it; ``CROSS_CONTEXTS`` changes the number of contexts (default 120000).
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import flagrail

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(os.environ.get("FLAGRAIL_CLI", ROOT / "target" / "debug" / "flagrail"))
NODE_EVAL = Path(__file__).with_name("node_eval.js")
VECTORS = ROOT / "tests" / "vectors"
TOTAL = int(os.environ.get("CROSS_CONTEXTS", "120000"))
SEED = 20261121

# Relative share of the contexts per document (others: 2). A fully killed document needs few.
WEIGHTS = {"examples/flags.json": 4.0, "v1/eval-kill.json": 0.5}

I64_MIN, I64_MAX = -(2**63), 2**63 - 1


# --------------------------------------------------------------------------- the documents


@dataclass
class Doc:
    name: str
    path: Path
    source: dict[str, Any]
    # attribute -> candidate values taken from the conditions that read it
    values: dict[str, list[Any]] = field(default_factory=dict)
    # attributes used as bucketing units
    units: set[str] = field(default_factory=set)
    instants: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    timeless: list[str] = field(default_factory=list)


def load_documents(tmp: Path) -> list[Doc]:
    docs = [Doc("examples/flags.json", ROOT / "examples" / "flags.json", json.loads((ROOT / "examples" / "flags.json").read_text()))]
    index = json.loads((VECTORS / "index.json").read_text())
    for entry in index["files"]:
        if entry["kind"] != "eval":
            continue
        data = json.loads((VECTORS / entry["path"]).read_text())
        path = tmp / Path(entry["path"]).name
        path.write_text(json.dumps(data["document"]))
        docs.append(Doc(entry["path"], path, data["document"]))
    assert len(docs) >= 2, "examples/flags.json and at least one vector document"
    for doc in docs:
        analyse(doc)
    return docs


def conditions(node: Any) -> Iterator[dict[str, Any]]:
    """Every leaf condition (`attr` + `op`) under a condition tree."""
    if not isinstance(node, dict):
        return
    if "attr" in node:
        yield node
    for key in ("all", "any"):
        for child in node.get(key, []):
            yield from conditions(child)
    if "not" in node:
        yield from conditions(node["not"])


def analyse(doc: Doc) -> None:
    leaves = [c for seg in doc.source.get("segments", {}).values() for c in conditions(seg)]
    ramps = []
    for key, flag in doc.source["flags"].items():
        doc.flags.append(key)
        doc.units.add(flag.get("bucket_by", "user_id"))
        has_ramp = False
        for rule in flag.get("rules", []):
            leaves.extend(conditions(rule.get("when")))
            if "bucket_by" in rule:
                doc.units.add(rule["bucket_by"])
            if "ramp" in rule:
                has_ramp = True
                ramps.append(rule["ramp"])
        if not has_ramp:
            doc.timeless.append(key)
    for leaf in leaves:
        doc.values.setdefault(leaf["attr"], []).extend(candidates(leaf["op"], leaf.get("value")))
    doc.instants = instants(ramps)


def candidates(op: str, value: Any) -> list[Any]:
    """Values that match a condition, and near misses of every type."""
    literals = value if isinstance(value, list) else [value]
    out: list[Any] = []
    for v in literals:
        if isinstance(v, bool):
            out += [v, not v, str(v).lower()]
        elif isinstance(v, int):
            out += [v, v + 1, v - 1, str(v), v + 0.5, -v]
        elif isinstance(v, float):
            out += [v, v + 0.25, v - 0.25, int(v) + 1, str(v)]
        elif isinstance(v, str):
            out += [v, v.upper(), f"{v}-x", f"x-{v}", f"ü{v}", f"{v}🙂", [v], ["other", v], ["other"]]
            if op == "matches":
                # A string the pattern accepts: each character class becomes its first member,
                # then the operators go. Plus near misses around it.
                plain = re.sub(r"[\^$\\.*+?(){}|]", "", re.sub(r"\[\^?(.)[^\]]*\]", r"\1", v))
                out += [plain, f"{plain}/", plain.upper(), f"x{plain}"]
            if op.startswith("semver_"):
                out += semver_neighbours(v)
            if op in ("before", "after"):
                out += timestamp_neighbours(v)
    if op in ("contains",):
        out += [[], ["beta", "alpha"], "my-beta-group"]
    return out


def semver_neighbours(version: str) -> list[Any]:
    match = re.match(r"v?(\d+)\.(\d+)\.(\d+)", version)
    if not match:
        return ["1.0.0", "garbage"]
    major, minor, patch = (int(x) for x in match.groups())
    out: list[Any] = []
    for dm, dn, dp in [(0, 0, 0), (0, 0, 1), (0, 0, -1), (0, 1, 0), (0, -1, 0), (1, 0, 0), (-1, 0, 0)]:
        m, n, p = major + dm, minor + dn, patch + dp
        if min(m, n, p) >= 0:
            out.append(f"{m}.{n}.{p}")
    out += [f"{version}-rc.1", f"v{version}", "not-a-version", f"{major}.{minor}", 3]
    return out


def parse_instant(text: str) -> datetime:
    if len(text) == 10:
        return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def timestamp_neighbours(text: str) -> list[Any]:
    moment = parse_instant(text)
    seconds = int(moment.timestamp())
    return [
        rfc3339(moment),
        rfc3339(moment - timedelta(days=1)),
        rfc3339(moment + timedelta(seconds=1)),
        moment.strftime("%Y-%m-%d"),
        seconds,
        seconds + 0.5,
        "not a date",
    ]


def duration(text: str) -> timedelta:
    total = timedelta()
    for amount, unit in re.findall(r"(\d+)(ms|s|m|h|d)", text):
        total += {"ms": timedelta(milliseconds=1), "s": timedelta(seconds=1), "m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}[unit] * int(amount)
    return total


def instants(ramps: list[dict[str, Any]]) -> list[str]:
    """Instants around every step boundary of every ramp, plus a few far ones."""
    moments = {datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2031, 6, 1, tzinfo=timezone.utc)}
    ms = timedelta(milliseconds=1)
    for ramp in ramps:
        at = parse_instant(ramp["start"])
        moments |= {at - timedelta(days=1), at - ms}
        for step in ramp["steps"]:
            moments |= {at, at + ms, at + timedelta(hours=1)}
            if "hold" not in step:
                break
            length = duration(step["hold"])
            moments |= {at + length / 2, at + length - ms}
            at += length
        moments |= {at + timedelta(days=30)}
        for key in ("paused_at",):
            if key in ramp:
                p = parse_instant(ramp[key])
                moments |= {p - ms, p, p + ms, p + timedelta(days=10)}
    out = sorted(rfc3339(m) for m in moments)
    # A few with offsets and without fractions: every language parses them through the core.
    out += [m.astimezone(timezone(timedelta(hours=2))).isoformat() for m in sorted(moments)[:3]]
    return out


# --------------------------------------------------------------------------- the contexts

JUNK: list[Any] = [None, {"nested": 1}, [1, 2], 1.5, True, "", "🙂", -3]


def unit(rng: random.Random) -> Any:
    n = rng.randrange(1_000_000)
    kind = rng.randrange(24)
    if kind < 8:
        return f"user-{n}"
    if kind < 11:
        return rng.choice(["usuário-{}", "用户{}", "пользователь-{}", "José-{}", "straße{}", "ﬁ{}"]).format(n)
    if kind < 13:
        return rng.choice(["🙂{}", "👩‍💻-{}", "{}🚀", "🇺🇳{}"]).format(n)
    if kind < 15:
        return rng.choice([n, -n, n * 1_000_003, 2**53 + n, -(2**53) - n, I64_MAX - n, I64_MIN + n, 2**64 + n, -(2**70) - n])
    if kind < 17:
        return rng.choice(["", None, 1.5, True, ["user"], {"id": n}, -0.5])
    return f"u{n:x}"


MISSING = object()


def value_for(rng: random.Random, doc: Doc, attr: str) -> Any:
    roll = rng.random()
    if roll < 0.06:
        return MISSING
    if roll < 0.13:
        return rng.choice(JUNK)
    if attr in doc.units and (attr not in doc.values or rng.random() < 0.7):
        return unit(rng)
    pool = doc.values.get(attr)
    if not pool:
        return unit(rng)
    return rng.choice(pool)


def requests(doc: Doc, count: int, rng: random.Random) -> list[dict[str, Any]]:
    attributes = sorted(set(doc.values) | doc.units)
    out = []
    for i in range(count):
        flag = doc.flags[i % len(doc.flags)] if i % 97 else "no-such-flag"
        context = {}
        for attr in attributes:
            if rng.random() < 0.85:
                value = value_for(rng, doc, attr)
                if value is not MISSING:
                    context[attr] = value
        if rng.random() < 0.05:
            context["extra"] = rng.choice(JUNK)
        out.append({"flag": flag, "context": context, "at": rng.choice(doc.instants)})
    return out


LONE_SURROGATES = ["\ud800", "\udfff", "\udc80"]
# What Rust reads in place of a string with a lone surrogate: a value no condition can use.
UNSUPPORTED_STAND_IN = {"lone_surrogate": True}


def add_lone_surrogates(batch: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """Puts a lone surrogate into a string value of about 3 % of the contexts (in place), and
    returns the batch as Rust reads it (those values replaced by an unsupported stand-in)."""
    rust_batch = []
    for request in batch:
        context = request["context"]
        texts = [k for k, v in context.items() if isinstance(v, str)]
        if texts and rng.random() < 0.03:
            key = rng.choice(texts)
            lone = rng.choice(LONE_SURROGATES)
            context[key] = rng.choice([context[key] + lone, lone + context[key], lone])
            request = {**request, "context": {**context, key: UNSUPPORTED_STAND_IN}}
        rust_batch.append(request)
    return rust_batch


# --------------------------------------------------------------------------- the three languages


def rust(doc: Doc, lines: str) -> list[tuple[Any, ...]]:
    done = subprocess.run([str(CLI), "eval-batch", str(doc.path)], input=lines, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"flagrail eval-batch failed: {done.stderr}"
    out = []
    for line in done.stdout.splitlines():
        r = json.loads(line)
        out.append((r["variant"], r["reason"], r["rule_id"], r["bucket"]))
    return out


def python(doc: Doc, batch: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    flags = flagrail.Flags.from_file(str(doc.path), reload=False)
    timeless = set(doc.timeless)
    out = []
    differing = 0
    for request in batch:
        v = flags.variant(request["flag"], request["context"], at=request["at"])
        out.append((v.id, v.reason, v.rule_id, v.bucket))
        # `variants` (the context read once for several flags) must give the same answer; with
        # node_eval.js checking the same, both languages' `variants` agree with the CLI too.
        many = flags.variants(request["context"], [request["flag"]], at=request["at"])[request["flag"]]
        differing += (many.id, many.reason, many.rule_id, many.bucket) != out[-1]
        if request["flag"] in timeless:
            # And now (no `at`), beside an unknown key, as a request handler calls it.
            now = flags.variants(request["context"], [request["flag"], "no-such-flag"])[request["flag"]]
            differing += (now.id, now.reason, now.rule_id, now.bucket) != out[-1]
    assert differing == 0, f"variants() differs from variant() for {differing} requests"
    return out


def node(manifest: Path) -> list[tuple[Any, ...]]:
    done = subprocess.run(["node", str(NODE_EVAL), str(manifest)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"node_eval.js failed: {done.stderr}"
    out = []
    for line in done.stdout.splitlines():
        r = json.loads(line)
        out.append((r["variant"], r["reason"], r["rule_id"], r["bucket"]))
    return out


# --------------------------------------------------------------------------- the test


def test_rust_python_and_node_agree(tmp_path: Path) -> None:
    if not CLI.exists():
        pytest.fail(f"{CLI} is missing: run `make build-cli`")
    rng = random.Random(SEED)
    docs = load_documents(tmp_path)
    weight = {d.name: WEIGHTS.get(d.name, 2.0) for d in docs}
    scale = TOTAL / sum(weight.values())
    manifest = []
    batches = []
    lone_contexts = 0
    for doc in docs:
        count = max(1000, round(scale * weight[doc.name]))
        batch = requests(doc, count, rng)
        rust_batch = add_lone_surrogates(batch, random.Random(SEED + len(batches)))
        lone_contexts += sum(1 for a, b in zip(batch, rust_batch) if a is not b)
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rust_batch)
        # Escaped, so that Node's JSON reader builds the lone surrogates (no UTF-8 holds them).
        node_text = "".join(json.dumps(r) + "\n" for r in batch)
        requests_file = tmp_path / f"requests-{len(batches)}.jsonl"
        requests_file.write_text(node_text, encoding="utf-8")
        manifest.append({"document": str(doc.path), "requests": str(requests_file), "timeless": doc.timeless})
        batches.append((doc, batch, text))
    assert sum(len(b) for _, b, _ in batches) >= 100_000 or TOTAL < 100_000
    assert lone_contexts >= TOTAL // 100, f"only {lone_contexts} contexts hold a lone surrogate"

    manifest_file = tmp_path / "manifest.json"
    manifest_file.write_text(json.dumps(manifest))
    node_results = node(manifest_file)

    offset = 0
    for doc, batch, text in batches:
        rust_results = rust(doc, text)
        python_results = python(doc, batch)
        node_part = node_results[offset : offset + len(batch)]
        offset += len(batch)
        assert len(rust_results) == len(python_results) == len(node_part) == len(batch), "one result per context"
        for i, request in enumerate(batch):
            r, p, n = rust_results[i], python_results[i], node_part[i]
            if not r == p == n:
                pytest.fail(
                    f"languages disagree on {doc.name}, context #{i}:\n"
                    f"  request: {json.dumps(request, ensure_ascii=False)}\n"
                    f"  (variant, reason, rule_id, bucket)\n"
                    f"  rust:   {r}\n  python: {p}\n  node:   {n}"
                )
        # The generator must reach every rule of the document.
        decided = {(batch[i]["flag"], res[2]) for i, res in enumerate(rust_results) if res[2] is not None}
        killed_doc = doc.source.get("kill", {}).get("active", False)
        for key, flag in doc.source["flags"].items():
            if killed_doc or flag.get("kill", {}).get("active", False):
                # A kill switch in force shadows every rule: the flag must read KILLED instead.
                assert any(batch[i]["flag"] == key and res[1] == "KILLED" for i, res in enumerate(rust_results)), key
                continue
            for position, rule in enumerate(flag.get("rules", [])):
                # A rule without an id is named by its position (docs/flag-document.md).
                rule_id = rule.get("id", f"rules[{position}]")
                ramp = rule.get("ramp", {})
                if ramp.get("rolled_back") and "baseline" not in ramp:
                    continue  # rolled back to 0 % with no baseline: it can never decide
                assert (key, rule_id) in decided, f"{doc.name}: no context reaches rule {key}/{rule_id}"
        reasons = {res[1] for res in rust_results}
        assert "FLAG_NOT_FOUND" in reasons
    assert offset == len(node_results)
