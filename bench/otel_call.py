"""The cost of the OpenTelemetry spans on ``Flags.call``, as instructions per call.

    FLAGRAIL_OTEL=0 python bench/otel_call.py N          # the native call (as without the package)
    python bench/otel_call.py N                          # API installed, no SDK: non-recording
    python bench/otel_call.py N sdk                      # SDK recording, spans dropped by a no-op exporter

Run each under ``valgrind --tool=callgrind`` for N and 2N calls: (Ir(2N) - Ir(N)) / N is the
instructions per call, independent of machine load (docs/ecosystem.md has the figures).
"""

from __future__ import annotations

import sys

from flagrail import Flags

calls = int(sys.argv[1])
if len(sys.argv) > 2 and sys.argv[2] == "sdk":
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Drop()))
    trace.set_tracer_provider(provider)

flags = Flags.from_dict(
    {"revision": "r1", "flags": {"bot": {"variants": {"a": {"model": "m", "temperature": 0.2}}, "default": "a"}}}
)
user = {"user_id": "u-1"}


def fn(v: object) -> str:
    return "ok"


flags.call("bot", user, fn)  # warm: first-call imports happen before the measured loop
for _ in range(calls):
    flags.call("bot", user, fn)
