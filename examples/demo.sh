#!/usr/bin/env bash
# The main demo: a support assistant ramps a model + prompt bundle; on-call kills it and brings
# it back. Run by `make demo` after the CLI, the Python package and the Node addon are built.
set -euo pipefail
cd "$(dirname "$0")/.."
FLAGRAIL=target/release/flagrail
EXAMPLE=examples/flags.json
PY=.venv/bin/python
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
# One line per decision: variant, reason, rule, bucket (and the payload's model or message).
brief() {
  "$PY" -c 'import json,sys; r=json.load(sys.stdin); p=r["payload"] or {}
print("   ->", r["variant"], r["reason"], "rule=%s bucket=%s revision=%s" % (r["rule_id"], r["bucket"], r["revision"]), "|", p.get("model") or p.get("message"))'
}

say "1. The flag document is valid, and lint points at hygiene problems"
run $FLAGRAIL validate $EXAMPLE
run $FLAGRAIL lint $EXAMPLE --at 2026-11-21

say "2. Why does a user get what they get? (explain, on 2026-11-25: the canary is at 25 %)"
for ctx in '{"user_id": "user-7", "email": "ana@acme.com"}' \
           '{"user_id": "user-8", "plan": "enterprise"}' \
           '{"user_id": "user-3", "app_version": "2.9.1"}' \
           '{"user_id": "user-14"}' \
           '{"user_id": "user-12"}'; do
  printf '$ flagrail eval %s --flag support-bot --context %s --at 2026-11-25T00:00:00Z\n' "$EXAMPLE" "'$ctx'"
  $FLAGRAIL eval $EXAMPLE --flag support-bot --context "$ctx" --at 2026-11-25T00:00:00Z | brief
done

say "3. The ramp timeline over 100,000 synthetic users: nobody ever leaves the candidate"
run $FLAGRAIL simulate $EXAMPLE --flag support-bot --users 100000 --timeline

say "4. Kill switch drill on a copy of the document"
DRILL=$(mktemp -d)
trap 'rm -rf "$DRILL"' EXIT
cp $EXAMPLE "$DRILL/flags.json"
drill_eval() {
  printf '$ flagrail eval flags.json --flag support-bot --context %s --at 2026-11-25T00:00:00Z\n' "'{\"user_id\": \"user-14\"}'"
  $FLAGRAIL eval "$DRILL/flags.json" --flag support-bot --context '{"user_id": "user-14"}' --at 2026-11-25T00:00:00Z | brief
}
drill_eval
run $FLAGRAIL kill "$DRILL/flags.json" --flag support-bot --reason "candidate gives wrong refund amounts" --actor oncall-ana
drill_eval
run $FLAGRAIL unkill "$DRILL/flags.json" --flag support-bot --reason "fixed prompt shipped as v2.3" --actor oncall-ana
drill_eval
printf '$ cat flags.audit.jsonl\n'; cat "$DRILL/flags.audit.jsonl"

if [ -f examples/demo_languages.py ]; then
  say "5. The same users get the same decisions from Rust, Python and Node"
  $PY examples/demo_languages.py
fi

say "6. The runtime: the candidate goes bad during the ramp, and the guardrail halts it by itself"
$PY examples/demo_runtime.py

say "7. Guardrail fire drill: an outage trips the fallback guardrail within 20 calls"
run $FLAGRAIL drill $EXAMPLE --flag support-bot --variant v2.2 --error-rate 1.0 --requests 2000 \
  --context '{"plan": "pro"}' --at 2026-11-25T10:00:00Z --expect-trip

say "8. Cost breakers and a shadow candidate: budgets downgrade, the shadow is compared by run id"
$PY examples/demo_costs.py

say "9. A fleet reads the document over HTTP: a kill published on the server reaches the process"
# A local static server on 127.0.0.1 stands in for nginx, a CDN or an object store
# (docs/runbook.md §13); the Python process polls it every 0.5 s with ETag/Last-Modified.
REMOTE=$(mktemp -d)
trap 'rm -rf "$DRILL" "$REMOTE"' EXIT
cp $EXAMPLE "$REMOTE/flags.json"
$PY examples/demo_remote.py "$REMOTE" "$FLAGRAIL"

say "10. The autopilot: two candidates ramp on evidence; one reaches 100 %, the other is rolled back"
# A deterministic simulated rollout (examples/demo_autopilot.py): the real document decides who
# gets the candidate, `flagrail autopilot --once --at T` looks every 10 simulated minutes and
# writes its decisions through the audited rewrite; then `flagrail report` draws it all.
$PY examples/demo_autopilot.py --flagrail $FLAGRAIL --out examples/out/autopilot
printf '$ flagrail forensics --events examples/out/autopilot/events.jsonl --flag ticket-summary --variant candidate --summary\n'
$FLAGRAIL forensics --events examples/out/autopilot/events.jsonl --flag ticket-summary --variant candidate --summary
if [ -f examples/out/events-python.jsonl ]; then
  printf '\nThe runtime demo (step 6): the runs the halted candidate served, and its report\n'
  run $FLAGRAIL forensics --events examples/out/events-python.jsonl --flag support-assistant --variant candidate --summary
  run $FLAGRAIL report examples/out/rollout.json --events examples/out/events-python.jsonl --out examples/out/rollout-report.html
fi

say "11. A fleet on Redis: two processes (Python and Node) share one budget, and a kill reaches both"
# A throwaway redis-server on 127.0.0.1 holds the document (flagrail push --redis) and the shared
# state (redis=URL): budget leases, guardrail counts, metrics, pins (docs/fleet.md).
$PY examples/demo_fleet.py "$FLAGRAIL"

echo
echo "open examples/out/autopilot/report.html in a browser"
