"""`flagrail report` in a real headless browser (Debian's chromium).

A short deterministic rollout (examples/demo_autopilot.py: the real document decides who gets
the candidate, `flagrail autopilot` decides and writes) produces events, an audit log and a
report. Chromium then loads the report from disk: no console or JavaScript errors, every SVG
series the report drew is in the rendered DOM with the series the story needs, and a screenshot
is not blank (decoded here with zlib, no imaging library).
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
import time
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from redis_server import RedisServer

from flagrail import Flags

REPO = Path(__file__).resolve().parents[2]
CLI = REPO / "target" / "debug" / "flagrail"


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("chromium is missing: `make system-deps` installs it")


@pytest.fixture(scope="module")
def rollout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not CLI.exists():
        raise RuntimeError("target/debug/flagrail is missing: run `make build-cli`")
    out = tmp_path_factory.mktemp("autopilot")
    subprocess.run(
        [sys.executable, str(REPO / "examples" / "demo_autopilot.py"), "--flagrail", str(CLI),
         "--out", str(out), "--looks", "9", "--users", "400"],
        check=True, capture_output=True, text=True, timeout=300,
    )
    return out


def browser(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={out / 'chromium-profile'}", "--enable-logging=stderr", "--v=0",
         *args, (out / "report.html").as_uri()],
        capture_output=True, text=True, timeout=120,
    )


def test_the_rollout_promoted_one_candidate_and_rolled_back_the_other(rollout: Path) -> None:
    records = [json.loads(line) for line in (rollout / "autopilot.audit.jsonl").read_text().splitlines()]
    decisions = [(r["flag"], r["decision"], r["step"]) for r in records if r["action"] == "autopilot"]
    assert ("ticket-summary", "roll_back", 0) in decisions
    assert [d for d in decisions if d[0] == "support-assistant"][:2] == [
        ("support-assistant", "promote", 0), ("support-assistant", "promote", 1)]
    # Every written decision carries its evidence: samples per arm and each metric's interval.
    for record in records:
        evidence = record["evidence"]
        assert evidence["samples"]["candidate"] >= 50
        assert all(m["interval"] is not None for m in evidence["metrics"])


def test_status_shows_the_autopilots_last_decision(rollout: Path) -> None:
    """The decision written into the document travels with it: a handle that loads it shows
    the last decision (what, when, by whom, the evidence in brief) beside the state."""
    from flagrail import Flags

    records = [json.loads(line) for line in (rollout / "autopilot.audit.jsonl").read_text().splitlines()]
    written = {r["flag"]: r for r in records if r["action"] == "autopilot"}
    flags = Flags.from_file(str(rollout / "autopilot.json"))
    ramps = {ramp["flag"]: ramp for ramp in flags.status()["autopilot"]}
    rolled_back = ramps["ticket-summary"]
    assert rolled_back["state"] == "rolled_back"
    last = rolled_back["last_decision"]
    assert last["decision"] == "roll_back"
    assert last["at"] == written["ticket-summary"]["time"]
    assert last["samples"] == written["ticket-summary"]["evidence"]["samples"]
    assert {m["metric"]: m["status"] for m in last["metrics"]}["quality"] == "regression"
    # Every ramp shows its last decision, or null before the autopilot wrote one.
    for flag, ramp in ramps.items():
        assert (ramp["last_decision"] is None) == (flag not in written)
    flags.close()


def test_the_report_renders_without_errors_and_with_every_series(rollout: Path) -> None:
    html = (rollout / "report.html").read_text()
    assert "http://" not in html and "https://" not in html, "the report must not fetch anything"
    drawn = re.findall(r'data-series="([^"]+)"', html)
    result = browser(rollout, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines()
               if "CONSOLE" in line or "Uncaught" in line or "SyntaxError" in line]
    assert console == []
    dom = result.stdout
    body = re.search(r"<body([^>]*)>", dom)
    assert body is not None
    assert 'data-js-errors="0"' in body.group(1), body.group(1)
    # The page's own script counted the series the browser parsed: all of those written.
    count = re.search(r'data-series-count="(\d+)"', body.group(1))
    assert count is not None and int(count.group(1)) == len(drawn) > 0

    def series_of(flag: str) -> set[str]:
        section = re.search(rf'<section data-flag="{flag}">(.*?)</section>', dom, re.S)
        assert section is not None, flag
        return set(re.findall(r'data-series="([^"]+)"', section.group(1)))

    assistant = series_of("support-assistant")
    for expected in ["ramp:canary", "decision", "limit:quality", "limit:latency_ms", "limit:cost"]:
        assert expected in assistant, (expected, sorted(assistant))
    for metric in ["quality", "error_rate", "latency_ms", "cost"]:
        for variant in ["stable", "candidate"]:
            assert f"metric:{metric}:{variant}" in assistant
            assert f"interval:{metric}:{variant}" in assistant
    summary = series_of("ticket-summary")
    assert {"ramp:canary", "decision", "limit:quality", "metric:quality:candidate"} <= summary


def rendered_series(out: Path) -> set[str]:
    """The series in the DOM chromium rendered from out/report.html; fails on any console or
    script error."""
    result = browser(out, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines()
               if "CONSOLE" in line or "Uncaught" in line or "SyntaxError" in line]
    assert console == []
    body = re.search(r"<body([^>]*)>", result.stdout)
    assert body is not None and 'data-js-errors="0"' in body.group(1), body
    return set(re.findall(r'data-series="([^"]+)"', result.stdout))


def test_the_report_from_redis_alone_charts_the_fleets_ramp(tmp_path: Path) -> None:
    # A ramp in its 50 % step for two hours; the candidate's answers are rated lower.
    began = (datetime.now(timezone.utc) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    document = {
        "revision": "r1",
        "flags": {"bot": {
            "bucket_by": "user_id",
            "variants": {"stable": {}, "v2": {}},
            "default": "stable",
            "rules": [{"id": "canary", "ramp": {
                "variant": "v2", "baseline": "stable", "start": began, "paused_at": began,
                "steps": [{"percent": 50, "hold": "1h"}, {"percent": 100}],
                "autopilot": {
                    "holds": [{"min": "30m", "max": "6h"}],
                    "min_units_per_arm": 50,
                    "metrics": [{"metric": "quality", "difference": 0.1}],
                },
            }}],
        }},
    }
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(document))
    with RedisServer.started(tmp_path / "redis") as server:
        subprocess.run([str(CLI), "push", str(path), "--redis", server.url],
                       check=True, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        with Flags.from_file(path, redis=server.url) as flags:
            deadline = time.monotonic() + 20
            while flags.status()["fleet"].get("autopilot") is None:
                assert time.monotonic() < deadline, flags.status()["fleet"]
                time.sleep(0.05)
            for user in range(300):
                result = flags.call("bot", {"user_id": f"user-{user}"}, lambda variant: variant.id)
                assert flags.feedback(result.run_id, quality=0.5 if result.value == "v2" else 0.8)
        # close() flushed what was pending. No events file anywhere: Redis alone.
        subprocess.run([str(CLI), "report", "--redis", server.url, "--out", str(tmp_path / "report.html")],
                       check=True, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    series = rendered_series(tmp_path)
    for expected in ["ramp:canary", "limit:quality"]:
        assert expected in series, (expected, sorted(series))
    for metric in ["quality", "error_rate", "latency_ms"]:
        for variant in ["stable", "v2"]:
            assert f"metric:{metric}:{variant}" in series, (metric, variant, sorted(series))
            assert f"interval:{metric}:{variant}" in series


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and unfiltered rows of an 8-bit RGB or RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, chunk = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = chunk
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), (depth, colour)
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = previous[i]
            c = previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line[i] for i in range(stride) if i % bpp < 3))
        previous = line
    return width, height, rows


def test_a_screenshot_is_not_blank(rollout: Path) -> None:
    shot = rollout / "report.png"
    result = browser(rollout, f"--screenshot={shot}", "--window-size=900,1200", "--hide-scrollbars")
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    width, height, rows = png_pixels(shot.read_bytes())
    assert (width, height) == (900, 1200)
    grey = [sum(row[i:i + 3]) / 3 for row in rows[::4] for i in range(0, len(row), 12)]
    mean = sum(grey) / len(grey)
    variance = sum((g - mean) ** 2 for g in grey) / len(grey)
    ink = sum(g < 200 for g in grey) / len(grey)
    # A blank page has no variance; the charts, lines and text give plenty.
    assert variance > 100, variance
    assert 0.01 < ink < 0.6, ink
    # Colour: the variants' lines are drawn in colour, not only black on white.
    coloured = sum(1 for row in rows[::4] for i in range(0, len(row), 3)
                   if max(row[i:i + 3]) - min(row[i:i + 3]) > 60)
    assert coloured > 200, coloured
