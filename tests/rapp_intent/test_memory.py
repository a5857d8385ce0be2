"""In-context memory: eq. 24 distance, eq. 46 calibration, fallback, SQLite persistence."""

from __future__ import annotations

import itertools
import math
import threading

import numpy as np
import pytest

from agentnet.intents import APP_PROFILES, EVEN
from rapp_intent.elam.base import MemoryContext, MemoryRecord, Translation, validate_output
from rapp_intent.memory import (
    CalibrationConfig,
    Memory,
    QuarantineConfig,
    angular_distance,
    apply_memory,
)

CFG = CalibrationConfig(low=0.08, high=0.25, iota_min=0.3, spread_max=0.15, min_records=3)


def _ctx(vectors, app="qa"):
    recs = tuple(
        MemoryRecord(prompt=f"p{i}", vector=v, reward=1.0, app=app) for i, v in enumerate(vectors)
    )
    return MemoryContext(app=app, records=recs)


def test_angular_distance_eq24():
    assert angular_distance((1, 0, 0, 0), (0, 1, 0, 0)) == pytest.approx(0.5)
    assert angular_distance((0.25,) * 4, (0.25,) * 4) == pytest.approx(0.0, abs=1e-7)
    a, b = (0.4, 0.3, 0.15, 0.15), (0.2, 0.1, 0.5, 0.2)
    cos = (
        sum(x * y for x, y in zip(a, b, strict=True))
        / math.dist(a, (0,) * 4)
        / math.dist(b, (0,) * 4)
    )
    assert angular_distance(a, b) == pytest.approx(math.acos(cos) / math.pi)
    with pytest.raises(ValueError):
        angular_distance((0, 0, 0, 0), (1, 0, 0, 0))


def test_iota_falls_linearly_between_thresholds():
    assert CFG.iota(0.0) == 1.0 and CFG.iota(0.08) == 1.0
    assert CFG.iota(0.25) == CFG.iota(0.5) == 0.3
    mid = (0.08 + 0.25) / 2
    assert CFG.iota(mid) == pytest.approx(1 - 0.7 / 2)
    values = [CFG.iota(d / 100) for d in range(0, 51)]
    assert all(x >= y for x, y in itertools.pairwise(values))


def test_consistent_history_close_translation_is_used_as_is():
    ctx = _ctx([(0.3, 0.1, 0.45, 0.15)] * 5)
    s = validate_output([0.3, 0.15, 0.4, 0.15])
    served = apply_memory(s, ctx, CFG)
    assert served.vector == s.vector
    assert not served.calibrated and not served.fallback
    assert served.divergence is not None and served.divergence <= CFG.low


def test_divergent_translation_is_calibrated_eq46():
    history = [(0.3, 0.1, 0.45, 0.15), (0.25, 0.1, 0.5, 0.15), (0.3, 0.15, 0.4, 0.15)]
    ctx = _ctx(history)
    mean = ctx.mean
    s = validate_output([0.05, 0.85, 0.05, 0.05])
    served = apply_memory(s, ctx, CFG)
    d = angular_distance(s.vector, mean)
    iota = CFG.iota(d)
    assert served.calibrated and not served.fallback and iota < 1
    expected = [iota * a + (1 - iota) * b for a, b in zip(s.vector, mean, strict=True)]
    assert served.vector == pytest.approx(expected)
    assert served.iota == pytest.approx(iota)
    assert angular_distance(served.vector, mean) < d


def test_inconsistent_history_calibrates_nothing():
    ctx = _ctx([(0.85, 0.05, 0.05, 0.05), (0.05, 0.85, 0.05, 0.05), (0.05, 0.05, 0.85, 0.05)])
    s = validate_output([0.05, 0.05, 0.05, 0.85])
    served = apply_memory(s, ctx, CFG)
    assert served.vector == s.vector and not served.calibrated


def test_short_history_calibrates_nothing():
    ctx = _ctx([(0.3, 0.1, 0.45, 0.15)] * 2)
    s = validate_output([0.05, 0.85, 0.05, 0.05])
    assert apply_memory(s, ctx, CFG).vector == s.vector


def test_failure_falls_back_to_recent_mean_then_profile_then_even():
    failed = Translation.failure("bad_sum", "sums to 0.95")
    ctx = _ctx([(0.4, 0.2, 0.2, 0.2), (0.2, 0.2, 0.4, 0.2)])
    served = apply_memory(failed, ctx, CFG)
    assert served.fallback and served.source == "recent_mean"
    assert served.vector == pytest.approx((0.3, 0.2, 0.3, 0.2))
    served = apply_memory(failed, MemoryContext(app="critical"), CFG)
    assert served.fallback and served.vector == APP_PROFILES["critical"]
    served = apply_memory(failed, MemoryContext(app=None), CFG)
    assert served.fallback and served.vector == EVEN and served.source == "even"


def _rec(i, app="qa"):
    return MemoryRecord(prompt=f"prompt {i}", vector=(0.25,) * 4, reward=float(i), app=app)


def test_memory_persists_across_reopen(tmp_path):
    path = tmp_path / "sub" / "mem.sqlite3"
    mem = Memory(path, max_records=100)
    for i in range(5):
        mem.append(_rec(i))
    mem.append(_rec(9, app="content"))
    mem.close()
    mem = Memory(path, max_records=100)
    assert mem.size("qa") == 5 and mem.size() == 6
    recent = mem.recent("qa", 3)
    assert [r.prompt for r in recent] == ["prompt 4", "prompt 3", "prompt 2"]
    assert recent[0].reward == 4.0 and recent[0].vector == (0.25,) * 4
    mem.close()


def test_memory_is_bounded_per_app(tmp_path):
    mem = Memory(tmp_path / "m.sqlite3", max_records=4)
    for i in range(10):
        size = mem.append(_rec(i)).count
    mem.append(_rec(0, app="critical"))
    assert size == 4 and mem.size("qa") == 4 and mem.size("critical") == 1
    assert [r.prompt for r in mem.recent("qa", 10)] == [f"prompt {i}" for i in (9, 8, 7, 6)]


def test_memory_rejects_non_finite_reward(tmp_path):
    mem = Memory(tmp_path / "m.sqlite3")
    with pytest.raises(ValueError):
        mem.append(MemoryRecord(prompt="p", vector=(0.25,) * 4, reward=math.nan, app="qa"))
    assert mem.size() == 0


def test_memory_is_thread_safe(tmp_path):
    mem = Memory(tmp_path / "m.sqlite3", max_records=10_000)

    def worker(offset):
        for i in range(50):
            mem.append(_rec(offset + i))
            mem.recent("qa", 8)

    threads = [threading.Thread(target=worker, args=(k * 100,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert mem.size("qa") == 200


def test_context_without_app_has_no_records(tmp_path):
    mem = Memory(tmp_path / "m.sqlite3")
    mem.append(_rec(1))
    assert mem.context(None, 8).records == ()
    assert len(mem.context("qa", 8).records) == 1


def _vec(w):
    w = np.clip(np.asarray(w, dtype=float), 1e-4, None)
    return tuple(float(x) for x in w / w.sum())


def _history(mem, app, n, seed=0):
    """n ordinary records of ``app``: its profile plus the spread of labelled intents."""
    rng = np.random.default_rng(seed)
    profile = np.array(APP_PROFILES[app])
    for i in range(n):
        mem.append(MemoryRecord(f"{app} {i}", _vec(profile + rng.normal(0, 0.04, 4)), 5.0, app),
                   request_id=f"{app}-{seed}-{i}")  # fmt: skip


def test_a_repeated_request_id_is_stored_once(tmp_path):
    mem = Memory(tmp_path / "m.sqlite3")
    first = mem.append(_rec(1), request_id="r-1")
    again = mem.append(_rec(2), request_id="r-1")
    assert first.stored and not again.stored and again.count == 1 == mem.size()
    assert mem.append(_rec(3), request_id="").stored and mem.append(_rec(4)).stored


def test_records_far_from_the_history_are_quarantined_not_averaged_in(tmp_path):
    mem = Memory(tmp_path / "m.sqlite3")
    _history(mem, "immersive", 50)
    out = mem.append(MemoryRecord("poison", (0.97, 0.01, 0.01, 0.01), 1e6, "immersive"), "p-1")
    assert out.stored and out.quarantined and out.divergence > mem.quarantine.radius
    assert mem.quarantined("immersive") == 1 and mem.size("immersive") == 51
    assert "poison" not in {r.prompt for r in mem.recent("immersive", 100)}
    # Before any history, the application's profile is the anchor.
    fresh = Memory(tmp_path / "fresh.sqlite3")
    assert fresh.anchor("critical") == APP_PROFILES["critical"]
    assert fresh.append(MemoryRecord("p", (0.97, 0.01, 0.01, 0.01), 0.0, "critical")).quarantined


def test_poisoning_bound_on_a_regular_prompt(tmp_path):
    """100 attacker records (one-factor extremes and a drift just inside the quarantine
    radius) move the vector served for a regular prompt by at most 0.05 (L1)."""
    cfg = CalibrationConfig()
    regular = Translation(vector=(0.223, 0.139, 0.437, 0.201))  # "render the scene ... no lag"
    for attack in ("extreme", "edge"):
        mem = Memory(tmp_path / f"{attack}.sqlite3")
        _history(mem, "immersive", 200)
        before = apply_memory(regular, mem.context("immersive", 8), cfg).vector
        anchor = np.array(mem.anchor("immersive"))
        for i in range(100):
            if attack == "extreme":
                v = (0.97, 0.01, 0.01, 0.01)
            else:  # as far towards capability as the radius lets a record pass
                v = anchor
                for step in np.linspace(0, 1, 200):
                    cand = _vec(anchor + step * (np.array([1.0, 0, 0, 0]) - anchor))
                    if angular_distance(cand, mem.anchor("immersive")) > mem.quarantine.radius:
                        break
                    v = cand
            mem.append(MemoryRecord(f"attack {i}", tuple(v), 1e6, "immersive"), f"a-{i}")
        after = apply_memory(regular, mem.context("immersive", 8), cfg).vector
        shift = float(np.abs(np.subtract(after, before)).sum())
        assert shift <= 0.05, (attack, shift)


def _sql_reference(path, app, k, q: QuarantineConfig):
    """recent(k) and the anchor computed from the file's rows, as the rows define them."""
    import sqlite3

    db = sqlite3.connect(path)
    recent = db.execute(
        "SELECT prompt, w_c, w_b, w_l, w_p, reward FROM records "
        "WHERE app = ? AND quarantined = 0 ORDER BY id DESC LIMIT ?",
        (app, k),
    ).fetchall()
    rows = db.execute(
        "SELECT w_c, w_b, w_l, w_p FROM records WHERE app = ? AND quarantined = 0 "
        "ORDER BY id DESC LIMIT ?",
        (app, q.anchor_records),
    ).fetchall()
    db.close()
    if len(rows) < q.prior_records:
        anchor = APP_PROFILES.get(app)
    else:
        med = [float(np.median([r[i] for r in rows])) for i in range(4)]
        anchor = tuple(x / sum(med) for x in med)
    return [(r[0], r[1:5], r[5]) for r in recent], anchor


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_in_memory_views_match_the_rows(tmp_path, seed):
    """Reads come from in-memory views; after every append, and after a reopen, they equal
    what the stored rows say (bound per application, quarantine, anchor window)."""
    rng = np.random.default_rng(seed)
    q = QuarantineConfig(radius=0.2, anchor_records=6, prior_records=3)
    path = tmp_path / "m.sqlite3"
    mem = Memory(path, max_records=9, quarantine=q)
    apps = ["qa", "immersive", "custom-app"]
    for i in range(120):
        app = apps[int(rng.integers(len(apps)))]
        if rng.random() < 0.2:
            v = _vec(np.eye(4)[int(rng.integers(4))] + 0.01)  # an outlier, often quarantined
        else:
            v = _vec(rng.dirichlet([4, 3, 2, 2]))
        request_id = f"r{int(rng.integers(100))}"  # repeats are ignored
        mem.append(MemoryRecord(f"p{i}", tuple(v), float(i), app), request_id)
        for check_app in apps:
            for k in (1, 4, 6, 20):
                want_recent, want_anchor = _sql_reference(path, check_app, k, q)
                ctx = mem.context(check_app, k)
                got = [(r.prompt, r.vector, r.reward) for r in ctx.records]
                assert got == want_recent, (i, check_app, k)
                if want_anchor is None:
                    assert ctx.anchor is None
                else:
                    assert ctx.anchor == pytest.approx(want_anchor, abs=1e-12)
    assert mem.quarantined() > 0
    reopened = Memory(path, max_records=9, quarantine=q)
    for app in apps:
        assert reopened.context(app, 6) == mem.context(app, 6)
    mem.close()
    reopened.close()
