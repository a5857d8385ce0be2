"""The feature extractor on hand-computed windows."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xapp_guard.events import Event
from xapp_guard.features import (
    FEATURES,
    INDEX,
    N_FEATURES,
    Featurizer,
    History,
    Reorder,
    Window,
    sequences,
    windows_of,
)

REQ, CTL, OUT = (f"lameta/v1/default/{t}" for t in ("requests", "control", "outcomes"))
REPORT = "/lameta.v1.IntentService/ReportOutcome"


def pub(t, client, topic, size, rid="", code="", decoded="ok"):
    return Event(t, "publish", client, topic, size, code, rid, decoded)


EVENTS = [
    Event(10.0, "connect", "sim"),
    pub(10.1, "sim", REQ, 300, "r1"),
    Event(10.2, "deliver", "xapp", REQ, 300),
    pub(10.4, "xapp", CTL, 100, "r1"),
    pub(10.5, "sim", OUT, 250, "r1", "served"),
    Event(10.6, "rpc", "grpc:x", REPORT, 80, "OK", "r1"),
    pub(10.7, "mal", CTL, 90, "r1"),  # a second decision for r1
    pub(10.8, "sim", OUT, 200, "r1", "duplicate"),  # ... refused
    pub(10.9, "mal", CTL, 90, "zz"),  # a decision for a request nobody made
    pub(11.2, "mal", CTL, 90, "zz"),  # ... again
    pub(11.3, "sim", OUT, 200, "zz", "unknown_request"),
    Event(11.5, "rpc", "grpc:m", REPORT, 40, "OK", ""),
    Event(11.6, "rpc", "grpc:m", REPORT, 60, "INVALID_ARGUMENT", "r1"),
    Event(11.9, "disconnect", "mal", code="closed"),
    Event(11.95, "deliver", "sensor", CTL, 90),
]


def _table(windows: list[Window]) -> dict[tuple[str, int], dict[str, float]]:
    return {
        (w.client, w.w): {f.name: float(w.x[i]) for i, f in enumerate(FEATURES) if w.x[i]}
        for w in windows
    }


def test_hand_computed_windows() -> None:
    got = _table(windows_of(EVENTS, "default", ignore=("sensor",)))
    gaps = np.array([0.1, 0.4, 0.3])  # sim's actions at 10.0, 10.1, 10.5, 10.8
    ctx = {"net_connects": 1.0, "net_requests": 1.0}
    expected = {
        ("sim", 10): {"pub_req": 1, "pub_req_bytes": 300, "pub_out": 2, "pub_out_bytes": 450,
                      "pub_bytes_max": 300, "connects": 1, "iat_mean": gaps.mean(),
                      "iat_min": 0.1, "iat_cv": gaps.std() / gaps.mean(), **ctx},
        ("xapp", 10): {"recv": 1, "recv_bytes": 300, "pub_ctl": 1, "pub_ctl_bytes": 100,
                       "pub_bytes_max": 100, **ctx},
        ("grpc:x", 10): {"rpc_report": 1, "rpc_bytes": 80, **ctx},
        ("mal", 10): {"pub_ctl": 2, "pub_ctl_bytes": 180, "pub_bytes_max": 90, "dup_other": 1,
                      "unknown_id": 1, "refused": 1, "iat_mean": 0.2, "iat_min": 0.2, **ctx},
        ("mal", 11): {"pub_ctl": 1, "pub_ctl_bytes": 90, "pub_bytes_max": 90, "replay_own": 1,
                      "unknown_id": 1, "refused": 1, "disconnects": 1, "abrupt": 1},
        ("sim", 11): {"pub_out": 1, "pub_out_bytes": 200, "pub_bytes_max": 200, "unknown_id": 1},
        ("grpc:m", 11): {"rpc_report": 2, "rpc_bytes": 100, "rpc_errors": 1,
                         "report_unbacked": 1, "report_replay": 1, "iat_mean": 0.1,
                         "iat_min": 0.1},
    }  # fmt: skip
    assert set(got) == set(expected)
    for key, feats in expected.items():
        assert got[key] == pytest.approx(feats, rel=1e-5), key


def test_orphaned_requests_are_charged_to_their_publisher() -> None:
    events = [
        pub(5.0, "flooder", REQ, 120, "f1"),
        pub(5.1, "xapp", CTL, 100, "f1"),
        pub(5.2, "sim", OUT, 150, "f1", "unknown_request"),
    ]
    got = _table(windows_of(events, "default"))
    assert got[("flooder", 5)]["orphaned"] == 1
    assert got[("xapp", 5)]["refused"] == 1
    assert "orphaned" not in got[("xapp", 5)]


def test_undecodable_and_other_topics() -> None:
    events = [
        pub(1.0, "m", REQ, 5_000_000, decoded="garbage"),
        pub(1.1, "m", "lameta/v1/status/m", 6),
        pub(1.2, "m", "somewhere/else", 3),
        Event(1.3, "denied", "m", REQ, 10, "publish"),
        Event(1.4, "subscribe", "m"),
    ]
    got = _table(windows_of(events, "default"))[("m", 1)]
    assert got["undecodable"] == 1 and got["pub_other"] == 2 and got["denied"] == 1
    assert got["pub_bytes_max"] == 5_000_000 and got["subscribes"] == 1


def test_a_report_logged_before_the_outcome_it_relays_is_backed() -> None:
    """The rApp can log the call a moment before the sensor reads the outcome's line."""
    arrivals = [
        Event(20.40, "rpc", "grpc:x", REPORT, 80, "OK", "r9"),
        pub(20.45, "sim", OUT, 250, "r9", "served"),
    ]
    got = _table(windows_of(arrivals, "default", lag=1.0))
    assert "report_unbacked" not in got[("grpc:x", 20)]


def test_reorder_sorts_within_the_lag_and_counts_what_is_too_late() -> None:
    f = Featurizer("default")
    r = Reorder(f, lag=1.0)
    out = []
    for ev in [pub(3.5, "a", REQ, 1, "x"), pub(3.2, "b", REQ, 1, "x"), pub(9.0, "a", REQ, 1, "y")]:
        out += r.push(ev)
    # b's request came first in time: a's is the duplicate, whatever the arrival order.
    by = _table(out)
    assert by[("a", 3)]["dup_other"] == 1 and "dup_other" not in by[("b", 3)]
    r.push(pub(2.0, "c", REQ, 1, "z"))  # eight seconds late
    assert [w.client for w in r.flush()] == ["a"]
    assert f.late_events == 1


def test_idle_time_closes_the_open_window() -> None:
    f = Featurizer("default")
    r = Reorder(f, lag=0.5)
    assert r.push(Event(1.2, "connect", "a")) == []
    closed = r.advance(2.6)
    assert [(w.client, w.w) for w in closed] == [("a", 1)]
    assert r.advance(10.0) == []


def test_sequences_fill_silent_windows_with_zeros() -> None:
    def win(w: int, v: float) -> Window:
        return Window("c", w, np.full(N_FEATURES, v, np.float32), True)

    ws = [win(10, 1.0), win(12, 2.0), Window("d", 12, np.zeros(N_FEATURES, np.float32), True)]
    seq = sequences(ws, 3)
    assert seq.shape == (3, 3, N_FEATURES)
    np.testing.assert_array_equal(seq[1, :, 0], [1.0, 0.0, 2.0])
    np.testing.assert_array_equal(seq[0, :, 0], [0.0, 0.0, 1.0])
    h = History(3)
    for w in ws[:2]:
        online = h.push(w)
    np.testing.assert_array_equal(online, seq[1])
    h.forget_idle(20)
    assert len(h) == 0


def test_feature_table_is_complete() -> None:
    assert N_FEATURES == len(INDEX) == 34
    assert all(f.unit and f.how for f in FEATURES)
    assert not any(math.isnan(len(f.how)) for f in FEATURES)
