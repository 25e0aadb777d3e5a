"""The autopilot over a simulated rollout, deterministic and fast (no network, no wall clock).

Every ten simulated minutes a few hundred users reach two flags of examples/autopilot.json. Who
gets which variant is decided by the real document through `flagrail eval-batch` (so every
promotion the autopilot writes changes who is in the candidate at the next look), and each run
is written to an events file exactly as `call` and `feedback` write it: an `exposure`, an
`outcome`, a `feedback`. Then `flagrail autopilot --once --at T` looks, decides and writes its
decision into the document. `support-assistant`'s candidate is as good as its control and is
promoted to 100 %; `ticket-summary`'s candidate is 0.08 worse on quality and is rolled back.
At the end `flagrail report` writes the HTML report.

    python3 examples/demo_autopilot.py --flagrail target/release/flagrail --out examples/out/autopilot
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
LOOK = timedelta(minutes=10)
# Per flag and variant: mean quality, error rate, latency (ms), cost per request.
PROFILES = {
    ("support-assistant", "stable"): (0.80, 0.01, 900.0, 0.0020),
    ("support-assistant", "candidate"): (0.81, 0.01, 880.0, 0.0024),
    ("ticket-summary", "stable"): (0.78, 0.01, 400.0, 0.0005),
    ("ticket-summary", "candidate"): (0.70, 0.01, 380.0, 0.0004),
}


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def decide(flagrail: str, document: Path, requests: list[dict]) -> list[dict]:
    stdin = "".join(json.dumps(r) + "\n" for r in requests)
    out = subprocess.run(
        [flagrail, "eval-batch", str(document)], input=stdin, capture_output=True, text=True, check=True
    ).stdout
    return [json.loads(line) for line in out.splitlines()]


def window_events(flagrail: str, document: Path, begin: datetime, users: int, rng: random.Random) -> list[str]:
    """One look's traffic: `users` users, each with one run of each flag."""
    population = [f"user-{i}" for i in range(20 * users)]
    chosen = rng.sample(population, users)
    requests = []
    for k, user in enumerate(chosen):
        at = begin + LOOK * (k + 0.5) / users
        for flag in ("support-assistant", "ticket-summary"):
            requests.append({"flag": flag, "context": {"user_id": user}, "at": iso(at), "user": user})
    lines = []
    for request, decision in zip(requests, decide(flagrail, document, requests)):
        flag, user, at = request["flag"], request["user"], request["at"]
        variant = decision["variant"]
        quality, error_rate, latency, cost = PROFILES[(flag, variant)]
        run_id = f"{flag}-{user}-{at}"
        failed = rng.random() < error_rate
        common = {"time": at, "run_id": run_id, "flag": flag, "variant": variant, "revision": decision["revision"]}
        lines.append({"type": "exposure", **common, "reason": decision["reason"], "rule_id": decision["rule_id"],
                      "bucket": decision["bucket"], "model": None, "shadow": False, "unit": user, "segment": None})
        lines.append({"type": "outcome", **common, "rule_id": decision["rule_id"], "model": None, "attempt": 1,
                      "fallback": False, "shadow": False, "outcome": "error" if failed else "success",
                      "error_kind": "provider" if failed else None,
                      "latency_ms": round(rng.lognormvariate(0, 0.2) * latency, 1), "input_tokens": None,
                      "output_tokens": None, "cost": round(rng.lognormvariate(0, 0.3) * cost, 6),
                      "unit": user, "segment": None})
        if not failed:
            score = min(1.0, max(0.0, rng.gauss(quality, 0.05)))
            lines.append({"type": "feedback", **common, "model": None, "segment": None, "score": None,
                          "quality": round(score, 4)})
    return [json.dumps(line) for line in lines]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flagrail", default=str(ROOT / "target" / "release" / "flagrail"))
    parser.add_argument("--out", default=str(ROOT / "examples" / "out" / "autopilot"))
    parser.add_argument("--looks", type=int, default=14)
    parser.add_argument("--users", type=int, default=400, help="users per look")
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    document = out / "autopilot.json"
    shutil.copy(ROOT / "examples" / "autopilot.json", document)
    events = out / "events.jsonl"
    events.touch()
    rng = random.Random(args.seed)
    for look in range(args.looks):
        begin = START + LOOK * look
        with events.open("a") as f:
            for line in window_events(args.flagrail, document, begin, args.users, rng):
                f.write(line + "\n")
        result = subprocess.run(
            [args.flagrail, "autopilot", str(document), "--events", str(events), "--once", "--at", iso(begin + LOOK)],
            capture_output=True, text=True, check=True,
        )
        for line in result.stdout.splitlines():
            if " hold " not in line and "nothing to decide" not in line:
                print(f"{iso(begin + LOOK)}  {line}")
    print(f"after {args.looks} looks ({args.looks * LOOK.seconds // 60} simulated minutes):")
    subprocess.run([args.flagrail, "autopilot", str(document), "--events", str(events), "--once", "--dry-run",
                    "--at", iso(START + LOOK * args.looks)], check=True)
    report = out / "report.html"
    subprocess.run([args.flagrail, "report", str(document), "--events", str(events), "--out", str(report),
                    "--at", iso(START + LOOK * args.looks)], check=True)
    print(f"audit log: {out / 'autopilot.audit.jsonl'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
