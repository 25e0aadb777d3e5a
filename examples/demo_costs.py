"""Cost circuit breakers and a shadow candidate, with a local fake provider (no network).

The support chat runs on an expensive model. Two budgets guard the bill: a user above 20
requests an hour is served the cheap model, and a feature above $2 an hour is served a cached
answer. Meanwhile a candidate (sonnet-v3) runs in the shadow of 30 % of users: its answers are
recorded beside the served ones, under the same run id, and compared offline at the end.

    make demo                       # builds everything, runs this as step 8 of the main demo
    .venv/bin/python examples/demo_costs.py
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path
from statistics import median
from typing import Any

import flagrail
from flagrail import Flags, Output

ROOT = Path(__file__).resolve().parent.parent
FLAG = "support-chat"
QUESTION = "How do refunds work?"


def bold(text: str) -> str:
    return f"\033[1m{text}\033[0m" if sys.stdout.isatty() else text


def fake_model(variant: flagrail.Variant, user: str) -> Output:
    """Deterministic latency, tokens and answer per (variant, user). The candidate answers a
    trick question differently for one user in ten."""
    time.sleep((2 + flagrail.bucket("latency/" + variant.id, user, 6)) / 1000)
    policy = "14 days, original payment method"
    if variant.id == "sonnet-v3" and flagrail.bucket("candidate-differs", user, 10) == 0:
        policy = "30 days, store credit"
    output_tokens = 200 + flagrail.bucket("tokens/" + variant.id, user, 200)
    return Output(f"[{variant['model']}] Refunds: {policy}.", input_tokens=900, output_tokens=output_tokens)


def main() -> int:
    flags = Flags.from_file(str(ROOT / "examples" / "costs.json"), reload=False)
    events: list[dict[str, Any]] = []
    flags.on_event(events.append)

    print(bold("The budgets"))
    for b in flags.status()["budgets"]:
        scope = f"per {b['per']}" if b["per"] else ("per flag" if b["flag"] else "document-wide")
        limit = f"{b['limit']:.0f}" if b["measure"] == "requests" else f"${b['limit']:.2f}"
        print(f"  {b['flag'] or '*'}/{b['budget']}: {b['measure']} ≤ {limit} per {b['window']}, "
              f"{scope}, action {b['action']}")
    opus = flags.variant(FLAG, {"user_id": "u"})
    print(f"  a call to opus reserves its estimated maximum cost first: "
          f"800 × $0.075/1k + 1000 × $0.015/1k = $0.075; it is reconciled with the actual cost after")

    # 1. One heavy user: a new ticket (conversation) per request, plus one long conversation.
    print(bold("\n1. A heavy user: 25 new tickets in an hour, and one conversation that goes on"))
    served: list[tuple[str, str, str | None]] = []
    for n in range(25):
        ctx = {"user_id": "power-user", "conversation_id": f"ticket-{n}"}
        r = flags.call(FLAG, ctx, lambda v: fake_model(v, "power-user"))
        served.append((r.variant.id, r.variant.reason, r.variant.budget))
        if n == 0:
            flags.call(FLAG, {"user_id": "power-user", "conversation_id": "long-chat"},
                       lambda v: fake_model(v, "power-user"))
    runs = Counter(served)
    for (variant, reason, budget), count in sorted(runs.items(), key=lambda kv: -kv[1]):
        print(f"  {count:3d} × {variant:6s} {reason:8s}" + (f" (budget {budget})" if budget else ""))
    long_chat = flags.variant(FLAG, {"user_id": "power-user", "conversation_id": "long-chat"})
    fresh = flags.variant(FLAG, {"user_id": "power-user", "conversation_id": "ticket-99"})
    print(f"  the long conversation keeps its model: {long_chat.id} {long_chat.reason}; "
          f"a new ticket: {fresh.id} {fresh.reason} ({fresh.budget})")

    # 2. Everyone else: the feature's hourly budget runs out and the cached answer takes over.
    print(bold("\n2. 120 other users: the feature's $2/hour budget runs out"))
    tally: Counter[tuple[str, str]] = Counter()
    first_cached = None
    shadows_started = 0
    for i in range(120):
        user = f"user-{i}"
        r = flags.call(FLAG, {"user_id": user, "conversation_id": f"c-{i}"}, lambda v, u=user: fake_model(v, u))
        tally[(r.variant.id, r.variant.reason)] += 1
        shadows_started += r.shadow is not None
        if r.variant.id == "cached" and first_cached is None:
            first_cached = i
    for (variant, reason), count in sorted(tally.items(), key=lambda kv: -kv[1]):
        print(f"  {count:3d} × {variant:6s} {reason}")
    for e in events:
        if e["type"] in ("budget_exhausted", "budget_restored") and e["budget"] != "shadow":
            scope = f" scope {e['scope']}" if e["scope"] else ""
            print(f"  ⚡ {e['time']} {e['type']}: {e['flag']}/{e['budget']}{scope} "
                  f"(spent {e['spent']:.3f}, reserved {e['reserved']:.3f} of {e['limit']})")
    feature = next(b for b in flags.status()["budgets"] if b["budget"] == "feature-hourly")
    print(f"  status: feature-hourly spent ${feature['spent']:.3f} of ${feature['limit']:.2f}, "
          f"exhausted={feature['exhausted']} (first cached answer at user #{first_cached})")

    # 3. The shadow: wait for the shadow calls (they never delayed a served answer), then pair
    #    every served output with its shadow by run id.
    print(bold("\n3. The shadow candidate, compared offline by run id"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done = sum(1 for e in events if e["type"] == "outcome" and e["shadow"])
        if done >= shadows_started:
            break
        time.sleep(0.01)
    by_run: dict[str, dict[str, dict[str, Any]]] = {}
    for e in events:
        if e["type"] == "outcome" and e["outcome"] == "success":
            by_run.setdefault(e["run_id"], {})["shadow" if e["shadow"] else "served"] = e
    pairs = [p for p in by_run.values() if "shadow" in p and "served" in p]
    agree = sum(p["served"]["output"].split("] ", 1)[1] == p["shadow"]["output"].split("] ", 1)[1] for p in pairs)
    shadow_cap = next(b for b in flags.status()["budgets"] if b["budget"] == "shadow")
    print(f"  {len(pairs)} runs with both outputs recorded (shadow drawn for 30 % of users, "
          f"cap ${shadow_cap['limit']}/hour: spent ${shadow_cap['spent']:.3f})")
    print(f"  answers agree in {agree} of {len(pairs)} runs")
    print(f"  latency p50: served {median(p['served']['latency_ms'] for p in pairs):.1f} ms, "
          f"shadow {median(p['shadow']['latency_ms'] for p in pairs):.1f} ms")
    for p in [p for p in pairs if p["served"]["output"].split("] ", 1)[1] != p["shadow"]["output"].split("] ", 1)[1]][:2]:
        print(f"  run {p['served']['run_id'][:8]}…  served {p['served']['variant']}: {p['served']['output']}")
        print(f"  {' ' * 14}shadow {p['shadow']['variant']}: {p['shadow']['output']}")

    # 4. Cache keys: an answer cached for one variant is never served for another.
    print(bold("\n4. Cache keys are segmented by flag, variant and payload"))
    for v in (opus, flags.variant(FLAG, {"user_id": "power-user"})):
        print(f"  {v.id:6s} {v.cache_key(QUESTION)}")
    spend = ", ".join(f"{variant} ${m['cost']:.3f}" for variant, m in sorted(flags.metrics()[FLAG].items()))
    print(f"  spend by variant this hour: {spend}")
    ok = bool(pairs) and first_cached is not None and ("haiku", "BUDGET", "per-user-hourly") in runs
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
