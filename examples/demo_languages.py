"""The last part of `make demo`: the same users get the same decisions from Rust, Python and Node.

Evaluates a handful of users of examples/flags.json at three points of the support-bot ramp with
the `flagrail` CLI (Rust), the Python package and the Node addon, prints one table, and says
whether the three agree on variant, reason, rule and bucket.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from flagrail import Flags

ROOT = Path(__file__).resolve().parents[1]
DOCUMENT = ROOT / "examples" / "flags.json"
CLI = ROOT / "target" / "release" / "flagrail"

USERS = [
    {"user_id": "user-14"},
    {"user_id": "user-3"},
    {"user_id": "user-22"},
    {"user_id": "user-12"},
    {"user_id": "user-8", "plan": "enterprise"},
    {"user_id": "user-9", "email": "ana@acme.com"},
    {"user_id": "user-5", "app_version": "2.9.1"},
    {"user_id": "zoë-🦀", "groups": ["beta"], "country": "CA", "conversation_id": "c-77"},
]
TIMES = ["2026-11-21T10:00:00Z", "2026-11-25T00:00:00Z", "2026-11-28T00:00:00Z"]
FLAGS = ["support-bot", "support-prompt", "support-temperature"]

NODE = r"""
const { Flags } = require(process.argv[1] + '/bindings-node')
const flags = Flags.fromFile(process.argv[2], { reload: false })
const requests = JSON.parse(require('fs').readFileSync(0, 'utf8'))
const out = requests.map(({ flag, context, at }) => {
  const v = flags.variant(flag, context, undefined, { at })
  return { variant: v.id, reason: v.reason, rule_id: v.ruleId, bucket: v.bucket }
})
process.stdout.write(JSON.stringify(out))
"""


def main() -> int:
    requests = [{"flag": f, "context": u, "at": t} for t in TIMES for f in FLAGS for u in USERS]
    batch = "\n".join(json.dumps(r) for r in requests)
    rust = [
        json.loads(line)
        for line in subprocess.run(
            [str(CLI), "eval-batch", str(DOCUMENT)], input=batch, capture_output=True, text=True, check=True
        ).stdout.splitlines()
    ]
    flags = Flags.from_file(str(DOCUMENT), reload=False)
    python = []
    for r in requests:
        v = flags.variant(r["flag"], r["context"], at=r["at"])
        python.append({"variant": v.id, "reason": v.reason, "rule_id": v.rule_id, "bucket": v.bucket})
    node = json.loads(
        subprocess.run(
            ["node", "-e", NODE, str(ROOT), str(DOCUMENT)], input=json.dumps(requests), capture_output=True, text=True, check=True
        ).stdout
    )

    keys = ("variant", "reason", "rule_id", "bucket")
    differences = 0
    print(f"{'at':<12} {'flag':<20} {'user':<14} {'variant':<13} {'reason':<16} {'rule':<24} {'bucket':>6}  rust/python/node")
    for r, a, b, c in zip(requests, rust, python, node):
        same = all(a[k] == b[k] == c[k] for k in keys)
        differences += not same
        if r["flag"] == "support-bot" or not same:
            print(
                f"{r['at'][:10]:<12} {r['flag']:<20} {r['context']['user_id']:<14} {str(b['variant']):<13} "
                f"{b['reason']:<16} {str(b['rule_id']):<24} {str(b['bucket']):>6}  {'same' if same else 'DIFFERENT'}"
            )
    print(f"\n{len(requests)} decisions ({len(USERS)} users x {len(FLAGS)} flags x {len(TIMES)} times): "
          f"{len(requests) - differences} identical in Rust, Python and Node, {differences} different")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
