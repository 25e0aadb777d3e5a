"""Fleet kill drill (correctness): 8 processes — 4 Python, 4 Node — poll one document from a
real nginx every second; a killed document replaces it and every process serves the kill
variant, then the live one comes back everywhere. How long that takes is measured by
bench/fleet_drill.py (docs/benchmarks.md), not asserted here."""

from __future__ import annotations

from pathlib import Path

import fleet


def test_a_kill_reaches_every_process_of_the_fleet(tmp_path: Path) -> None:
    nginx, processes = fleet.start(tmp_path / "nginx", python=4, node=4, poll_interval=1.0)
    try:
        assert len(processes.processes) == 8
        assert set(processes.current.values()) == {"model"}
        switched = processes.publish_and_wait(fleet.document(1, killed=True), "human")
        assert len(switched) == 8
        assert set(processes.current.values()) == {"human"}
        back = processes.publish_and_wait(fleet.document(1, killed=False), "model")
        assert len(back) == 8
        assert set(processes.current.values()) == {"model"}
        # Every process polled nginx (304s at steady state are tested in test_http_source.py).
        assert len([1 for _, _, uri in nginx.log() if uri == "/flags.json"]) >= 3 * 8
    finally:
        processes.stop()
        nginx.stop()
