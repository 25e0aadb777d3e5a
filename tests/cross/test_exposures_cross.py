"""Cross-language: Python and Node sample the same units for a read's exposure (both draw with
bucketing v1 over ``"<flag>/exposure"`` in the core), and send the same events for the same
reads. ``make test-cross`` runs it against the installed wheel and the built addon."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from flagrail import Flags, bucket

ROOT = Path(__file__).resolve().parents[2]

DOCUMENT: dict[str, Any] = {
    "revision": "cross-1",
    "flags": {
        "chat-model": {
            "bucket_by": "user_id",
            "variants": {"control": {}, "v2": {}, "v3": {}},
            "default": "control",
            "rules": [
                {
                    "id": "split",
                    "split": [
                        {"variant": "control", "percent": 90},
                        {"variant": "v2", "percent": 5},
                        {"variant": "v3", "percent": 5},
                    ],
                }
            ],
        }
    },
}

# Strings (ASCII, non-ASCII, emoji) and integers (written in decimal by both).
UNITS: list[Any] = [f"user-{i}" for i in range(4000)] + ["josé", "Ωμέγα", "🙂", "", 0, 7, -12, 2**40]

NODE = r"""
const { Flags } = require(process.argv[1])
const input = JSON.parse(require('node:fs').readFileSync(0, 'utf8'))
const flags = Flags.fromObject(input.document, { exposures: { sample: 0.25 } })
const events = []
flags.onEvent((e) => events.push(e))
for (const unit of input.units) flags.variant('chat-model', { user_id: unit })
setImmediate(() => setImmediate(() => {
  const reads = events.filter((e) => e.type === 'exposure' && e.source === 'read')
  process.stdout.write(JSON.stringify({ events: reads.map((e) => [e.unit, e.variant, e.bucket]), status: flags.status().exposures }))
}))
"""


def test_python_and_node_sample_and_expose_the_same_units() -> None:
    flags = Flags.from_dict(DOCUMENT, exposures={"sample": 0.25})
    events: list[dict[str, Any]] = []
    flags.on_event(events.append)
    for unit in UNITS:
        flags.variant("chat-model", {"user_id": unit})
    python = [[e["unit"], e["variant"], e["bucket"]] for e in events if e.get("source") == "read"]

    done = subprocess.run(
        ["node", "-e", NODE, str(ROOT / "bindings-node")],
        input=json.dumps({"document": DOCUMENT, "units": UNITS}),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    node = json.loads(done.stdout)

    assert node["events"] == python
    expected = [str(u) for u in UNITS if str(u) and bucket("chat-model/exposure", str(u), 100000) < 25000]
    assert [unit for unit, _, _ in python] == expected
    python_status = flags.status()["exposures"]
    for key in ("reads", "events", "not_sampled", "no_unit", "flags"):
        assert node["status"][key] == python_status[key], key
