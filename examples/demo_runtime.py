"""The story flagrail exists for, end to end, with a local fake model provider (no network).

A support assistant ramps a candidate model + prompt bundle (25 % of users today). The candidate
is confidently wrong on one edge case — refunds in a foreign currency — that 8 % of users hit.
Every request goes through ``flags.acall``: the app checks each answer against the refund
policy and raises ``Reject`` when it is wrong, so the user is served by the fallback (stable) on
the spot. The guardrail watches the candidate's error rate and, once the evidence is in (the
95 % Wilson lower bound above 3 %), halts the ramp by itself. Then the same users are evaluated
by the Node package replaying the same traffic: the decisions must be identical.

    make demo                       # builds everything, runs this as part of the main demo
    .venv/bin/python examples/demo_runtime.py
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import flagrail
from flagrail import Flags, Output, Reject

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "examples" / "out"
FLAG = "support-assistant"
PROVIDER = json.loads((ROOT / "examples" / "fake_provider.json").read_text())
COMPARED_USERS = 2000


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def prepared_document(now: datetime) -> Path:
    """The rollout document with its ramp started 25 h ago: 1 h into the 25 % step."""
    doc = json.loads((ROOT / "examples" / "rollout.json").read_text())
    doc["flags"][FLAG]["rules"][0]["ramp"]["start"] = iso(now - timedelta(hours=25))
    del doc["$schema"]
    path = OUT / "rollout.json"
    path.write_text(json.dumps(doc, indent=2))
    return path


def is_edge_case(user: str) -> bool:
    edge = PROVIDER["edge_case"]
    return flagrail.bucket(edge["salt"], user, 100) < edge["percent"]


async def fake_model(variant: flagrail.Variant, user: str) -> dict[str, Any]:
    """The fake provider: deterministic latency and tokens per (variant, user)."""
    spec = PROVIDER["variants"][variant.id]
    low, high = spec["latency_ms"]
    await asyncio.sleep((low + flagrail.bucket("latency/" + variant.id, user, high - low + 1)) / 1000)
    out_low, out_high = spec["output_tokens"]
    wrong = variant.id in PROVIDER["edge_case"]["wrong"] and is_edge_case(user)
    return {
        "text": f"[{variant['model']}] Here is how your refund works …",
        "grounded": not wrong,
        "input_tokens": spec["input_tokens"],
        "output_tokens": out_low + flagrail.bucket("tokens/" + variant.id, user, out_high - out_low + 1),
    }


def context_of(i: int) -> dict[str, Any]:
    return {"user_id": f"user-{i}", "plan": "pro", "segment": "eu" if i % 3 == 0 else "us"}


def decisions(flags: Flags, instants: list[str]) -> list[list[str]]:
    rows = []
    for i in range(COMPARED_USERS):
        for at in instants:
            v = flags.variant(FLAG, context_of(i), at=at)
            rows.append([f"user-{i}", at, v.id, v.reason])
    return rows


def share_on(flags: Flags, variant: str, at: str, users: int = 10000) -> float:
    on = sum(flags.variant(FLAG, {"user_id": f"user-{i}"}, at=at).id == variant for i in range(users))
    return on * 100 / users


def bold(text: str) -> str:
    return f"\033[1m{text}\033[0m" if sys.stdout.isatty() else text


async def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    now = datetime.now(timezone.utc)
    later = now + timedelta(hours=24)  # the schedule's 50 % step
    instants = [iso(now), iso(later)]
    document = prepared_document(now)
    events_path = OUT / "events-python.jsonl"
    events_path.unlink(missing_ok=True)
    flags = Flags.from_file(str(document), reload=False, events=str(events_path))
    flags.hash_units("demo-secret")

    print(bold("The rollout"))
    print(f"  flag {FLAG}: stable (claude-sonnet-4) → candidate (claude-opus-4 + prompt v2.2)")
    print(f"  ramp today: {share_on(flags, 'candidate', iso(now)):.1f} % of users on the candidate; "
          f"schedule for tomorrow: {share_on(flags, 'candidate', iso(later)):.1f} %")
    print("  guardrail wrong-answers: error_rate, 95 % lower bound > 3 % over ≥ 50 calls → halt the ramp")
    print(f"  fake provider: the candidate is confidently wrong for {PROVIDER['edge_case']['percent']} % of users "
          "(foreign-currency refunds); the app rejects wrong answers")
    before = decisions(flags, instants)

    request_no = 0
    trips: list[tuple[int, dict[str, Any]]] = []

    def on_event(event: dict[str, Any]) -> None:
        if event["type"] == "guardrail_trip":
            trips.append((request_no, event))
            print(bold(
                f"\n  ⚡ request #{request_no}, {event['time']}: guardrail {event['guardrail']} tripped on "
                f"{event['variant']} — {event['observed'] * 100:.1f} % wrong over {event['samples']} calls, "
                f"lower bound {event['bound'] * 100:.2f} % > {event['threshold'] * 100:.0f} % → {event['action']} the ramp"
            ))

    flags.on_event(on_event)

    results: list[tuple[int, flagrail.CallResult]] = []

    async def handle(i: int) -> None:
        nonlocal request_no
        user = context_of(i)

        async def ask(variant: flagrail.Variant) -> Output:
            reply = await fake_model(variant, user["user_id"])
            if not reply["grounded"]:
                raise Reject("the answer contradicts the refund policy")
            return Output(reply["text"], input_tokens=reply["input_tokens"], output_tokens=reply["output_tokens"])

        result = await flags.acall(FLAG, user, ask)
        request_no += 1
        results.append((i, result))

    traffic = PROVIDER["traffic"]
    print(bold(f"\nTraffic: {traffic['users']} users, {traffic['concurrency']} at a time, through flags.acall"))
    for start in range(0, traffic["users"], traffic["concurrency"]):
        await asyncio.gather(*(handle(i) for i in range(start, min(start + traffic["concurrency"], traffic["users"]))))

    print(bold("\nPer variant (flags.metrics())"))
    metrics = flags.metrics()[FLAG]
    served = Counter(r.variant.id for _, r in results)
    print(f"  {'variant':<10} {'requests':>8} {'errors':>7} {'error rate':>10} {'p50 ms':>7} {'p95 ms':>7} {'cost $':>8} {'served':>7}")
    for variant in ("stable", "candidate", "human"):
        m = metrics.get(variant)
        if m is None:
            continue
        p50, p95 = m["latency_ms"]["p50"], m["latency_ms"]["p95"]
        print(f"  {variant:<10} {m['requests']:>8} {m['errors']:>7} {m['error_rate'] * 100:>9.2f}% "
              f"{p50 or 0:>7.1f} {p95 or 0:>7.1f} {m['cost']:>8.2f} {served[variant]:>7}")

    affected = [(i, r) for i, r in results if r.assigned == "candidate" and is_edge_case(f"user-{i}")]
    rescued = [r for _, r in affected if r.fallback_used and r.variant.id == "stable"]
    print(bold("\nThe users the candidate got wrong"))
    print(f"  {len(affected)} edge-case users were assigned the candidate; {len(rescued)} of them got a correct "
          "answer from stable (fallback), none saw the wrong one")
    if rescued:
        r = rescued[0]
        print("  e.g. run", r.run_id, "attempts:",
              ", ".join(f"{a.variant} {a.outcome}{' (' + a.error_kind + ')' if a.error_kind else ''}" for a in r.attempts))

    print(bold("\nThe ramp"))
    status = flags.status()["guardrails"]
    for g in status:
        print(f"  status(): guardrail {g['guardrail']} {g['state']} since {g['since']}, action {g['action']}, "
              f"half-open probe of {g['probe_percent']:.0f} % from {g['probe_from']}")
    soon = iso(now + timedelta(minutes=10))
    print(f"  candidate share in 10 minutes: {share_on(flags, 'candidate', soon):.1f} % (held at the step of the trip)")
    print(f"  tomorrow, when the schedule says 50 %: {share_on(flags, 'candidate', iso(later)):.1f} % — still held: "
          "only the 10 % half-open probe share sees the schedule after the 30 min cooldown")
    kinds = Counter(json.loads(line)["type"] for line in events_path.read_text().splitlines())
    print(f"  events in {events_path.relative_to(ROOT)}: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))

    after = decisions(flags, instants)
    (OUT / "decisions-python.json").write_text(json.dumps({"before": before, "after": after}))

    print(bold("\nThe same users, the same traffic, from Node"))
    node = subprocess.run(
        ["node", str(ROOT / "examples" / "demo_runtime.mjs"), str(document), *instants,
         str(OUT / "decisions-node.json"), str(COMPARED_USERS)],
        cwd=ROOT, text=True, capture_output=True,
    )
    sys.stdout.write("".join("  node: " + line + "\n" for line in node.stdout.splitlines()))
    if node.returncode != 0:
        sys.stderr.write(node.stderr)
        print("the Node demo failed")
        return 1
    theirs = json.loads((OUT / "decisions-node.json").read_text())
    ok = True
    for phase, ours in (("before the traffic", before), ("after the trip", after)):
        differ = [(a, b) for a, b in zip(ours, theirs[phase.split()[0]]) if a != b]
        ok = ok and not differ and len(ours) == len(theirs[phase.split()[0]])
        print(f"  {phase}: {len(ours)} decisions ({COMPARED_USERS} users × today and tomorrow), "
              f"{len(ours) - len(differ)} identical in Python and Node, {len(differ)} different")
        for a, b in differ[:5]:
            print("    python", a, "node", b)
    if not trips:
        print("the guardrail did not trip: the demo's story did not happen")
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
