"""maestro Fig. 5's timeline in the emulator, with the scripted negotiator (a test aid; the
committed figure uses SmolLM2): the consensus follows capacity, a toxic tenant is warned,
admission is suspended and recovers, and the figure is drawn from the run's log alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lameta_studies.negotiation_timeline import REPORT_DIR, TimelineConfig, plot, read_log, run


def absolute_paths(value: object) -> list[str]:
    """Every string in a JSON value that is an absolute path (POSIX or Windows)."""
    if isinstance(value, dict):
        return [p for v in value.values() for p in absolute_paths(v)]
    if isinstance(value, list):
        return [p for v in value for p in absolute_paths(v)]
    if isinstance(value, str) and (value.startswith(("/", "\\")) or value[1:3] in (":/", ":\\")):
        return [value]
    return []


def test_absolute_paths_are_found() -> None:
    found = absolute_paths({"a": ["x/y", {"b": "/work/x.png"}], "c": "C:\\r\\x", "d": 1.0})
    assert found == ["/work/x.png", "C:\\r\\x"]


@pytest.mark.parametrize("report", sorted(REPORT_DIR.glob("timeline_*.json")), ids=lambda p: p.name)
def test_committed_timelines_name_their_files_beside_them(report: Path) -> None:
    summary = json.loads(report.read_text())
    assert not absolute_paths(summary)
    assert (report.parent / summary["log"]).is_file() and (report.parent / summary["png"]).is_file()


@pytest.mark.slow
def test_scripted_timeline(tmp_path: Path):
    summary = run(TimelineConfig(llm="scripted", design="soft", out_dir=tmp_path))
    negs = summary["negotiations"]
    assert len(negs) == 4  # one per phase
    full, outage, suspend, recovered = negs[0], negs[1], negs[2], negs[-1]
    assert outage["capacity"] < 0.5 * full["capacity"]  # λ_cap fell with the outage
    assert outage["agreed"] < full["agreed"]  # and the consensus followed it
    assert outage["warnings"] >= 1  # the toxic tenant was warned
    assert suspend["agreed"] == 0.0 and suspend["targets"] == [0.0, 0.0, 0.0]
    assert recovered["capacity"] == pytest.approx(full["capacity"]) and recovered["agreed"] > 0
    for n in negs:
        assert abs(n["agreed"] - n["theoretical"]) <= 0.5 * n["capacity"] + 1e-9
    assert summary["outcomes"]["suspended"] > 0 and summary["outcomes"]["served"] > 0
    assert summary["policy_events"] == {"applied": len(negs)}

    written = json.loads((tmp_path / "timeline_scripted-soft.json").read_text())
    assert written == json.loads(json.dumps(summary)) and not absolute_paths(written)
    log = tmp_path / summary["log"]
    events = read_log(log)
    ticks = [e for e in events if e["event"] == "timeline_tick"]
    assert len(ticks) == 500 and all("t" in e for e in events if e["event"] != "timeline_started")
    suspended = [e["t"] for e in ticks if e["suspended"]]
    assert suspended and min(suspended) >= 300 and max(suspended) < 401
    # The state carries λ* one tick after each policy (the emulator enforces it).
    by_t = {e["t"]: e for e in ticks}
    assert by_t[150]["load"] == pytest.approx(by_t[150]["admitted"])
    png = plot(log, tmp_path / "again.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "timeline_scripted-soft.json").read_text())["llm"] == "scripted"
