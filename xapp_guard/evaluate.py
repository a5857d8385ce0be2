"""``xapp-guard eval --test-seed S --json``: every method's detectors on an unseen recording.

The test recording (``models/guard/corpus/seed-S``, recorded with ``--first-part test``)
has a network seed, an attack schedule and attack parameters the training never saw;
nothing here trains or tunes. For each method, every exported detector
(``detectors/<method>-s<k>.onnx``) classifies every labelled window; accuracy, macro-F1
and per-class precision, recall and F1 are averaged over the training seeds (each seed's
macro-F1 is listed too).

``alerts`` replays the test recording's events through the service's own pipeline
(:class:`~xapp_guard.service.Guard`, the shipped ``guard.onnx`` and its threshold):
detection delay per attack episode, in windows from the attacker's first active window
to its first alert (``null``: never alerted), and false alarms on benign windows. With a
clean recording (``--clean DIR``) it also counts the false alarms of a run without
attacks, per 10,000 windows.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from xapp_guard.corpus import Corpus, load, read_events
from xapp_guard.runtime import Detector
from xapp_guard.scenarios import CLASSES
from xapp_guard.service import Guard

PAPER_GAIN = 28.7
"""The paper's largest accuracy gain of real + GPT-3.5 data over real data alone (%)."""


def _mean_scores(runs: list[dict]) -> dict[str, Any]:
    per: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        for cls, d in r["per_class"].items():
            for k in ("precision", "recall", "f1"):
                per[cls][k].append(d[k])
            per[cls]["support"] = [d["support"]]
    f1s = [r["macro_f1"] for r in runs]
    return {
        "accuracy": round(float(np.mean([r["accuracy"] for r in runs])), 4),
        "macro_f1": round(float(np.mean(f1s)), 4),
        "macro_f1_std": round(float(np.std(f1s)), 4),
        "seeds_macro_f1": f1s,
        "per_class": {
            c: {k: round(float(np.mean(v)), 4) for k, v in d.items()} for c, d in per.items()
        },
    }


def score_methods(corpus: Corpus, detectors: Path, methods: list[str]) -> dict[str, Any]:
    """Mean scores over the seeds of each method's detectors on the corpus' labelled windows."""
    from xapp_guard.scoring import scores

    out: dict[str, Any] = {}
    idx = corpus.select(corpus.part != "")
    cache: dict[int, np.ndarray] = {}
    for method in methods:
        paths = sorted(detectors.glob(f"{method}-s*.onnx"))
        if not paths:
            raise FileNotFoundError(2, f"no detectors of {method}", str(detectors))
        runs = []
        for p in paths:
            det = Detector(p)
            if det.length not in cache:
                cache[det.length] = corpus.sequences(det.length)[idx]
            pred = det.probs(cache[det.length]).argmax(1)
            runs.append(scores(corpus.y[idx], pred))
        out[method] = _mean_scores(runs)
    return out


def alerts(directory: Path, model: Path) -> dict[str, Any]:
    """Detection delays and false alarms of the service pipeline on a recording."""
    corpus = load(directory)
    events = read_events(directory / "events.jsonl.gz")
    det = Detector(model)
    guard = Guard(det, corpus.labels["network"], ignore=(corpus.labels["sensor_client"],))
    flagged: dict[tuple[str, int], bool] = {}
    for s in guard.replay(events):
        flagged[(s.window.client, s.window.w)] = s.alert
    by_episode: dict[int, list[tuple[str, int]]] = defaultdict(list)
    benign = false_alarms = 0
    for k, w in enumerate(corpus.windows):
        if corpus.y[k] == 0:
            benign += 1
            false_alarms += int(flagged.get((w.client, w.w), False))
        if corpus.episode[k] >= 0:
            by_episode[int(corpus.episode[k])].append((w.client, w.w))
    delays: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for i, own in by_episode.items():
        ep = corpus.labels["episodes"][i]
        clients = {c for c, _ in own}
        first, last = min(w for _, w in own), max(w for _, w in own)
        hits = [w for (c, w), a in flagged.items() if a and c in clients and first <= w <= last]
        delays[ep["class"]][ep["variant"]].append(min(hits) - first if hits else None)
    summary = {}
    for cls, by_variant in delays.items():
        summary[cls] = {}
        for variant, ds in by_variant.items():
            got = [d for d in ds if d is not None]
            summary[cls][variant] = {
                "episodes": len(ds), "detected": len(got),
                "delay_windows": ds, "max_delay": max(got) if got else None,
            }  # fmt: skip
    return {
        "detector": str(model.name), "threshold": det.threshold,
        "benign_windows": benign, "false_alarms": false_alarms,
        "false_alarms_per_10k": round(1e4 * false_alarms / max(1, benign), 3),
        "episodes": summary,
    }  # fmt: skip


def clean_run(directory: Path, model: Path) -> dict[str, Any]:
    """False alarms of the service pipeline on a recording without attacks."""
    labels = json.loads((directory / "labels.json").read_text())
    if labels["episodes"]:
        raise ValueError(f"{directory} is not a clean recording (it has attack episodes)")
    events = read_events(directory / "events.jsonl.gz")
    det = Detector(model)
    guard = Guard(det, labels["network"], ignore=(labels["sensor_client"],))
    windows = alerts_ = 0
    near_bursts = 0
    spans = [(b["t_start"] - 2, b["t_end"] + 30) for b in labels["benign_events"]]
    by_client: dict[str, int] = defaultdict(int)
    flagged = []
    for s in guard.replay(events):
        windows += 1
        if s.alert:
            alerts_ += 1
            by_client[s.window.client] += 1
            t = s.window.w * guard.window_s
            near_bursts += int(any(a <= t <= b for a, b in spans))
            flagged.append({"client": s.window.client, "window": s.window.w, "class": s.attack,
                            "score": round(s.score, 4)})  # fmt: skip
    requests = sum(1 for e in events if e.kind == "publish" and e.topic.endswith("/requests"))
    return {
        "requests": requests, "windows": windows, "false_alarms": alerts_,
        "false_alarms_per_10k": round(1e4 * alerts_ / max(1, windows), 3),
        "near_legitimate_bursts": near_bursts,
        "legitimate_bursts": [b["kind"] for b in labels["benign_events"]],
        "by_client": dict(by_client), "alerts": flagged[:50],
    }  # fmt: skip


def evaluate(test_dir: Path, models: Path, test_seed: int, methods: list[str],
             clean_dir: Path | None = None) -> dict[str, Any]:  # fmt: skip
    """The report of ``xapp-guard eval`` (module docstring)."""
    corpus = load(test_dir)
    idx = corpus.select(corpus.part != "")
    windows = {CLASSES[c]: int((corpus.y[idx] == c).sum()) for c in range(len(CLASSES))}
    m = score_methods(corpus, models / "detectors", methods)
    out: dict[str, Any] = {"methods": m, "test_seed": test_seed, "windows": windows}
    if "synthetic_evolved" in m and "real_only" in m:
        ev, ro = m["synthetic_evolved"], m["real_only"]
        out["relative_gain_pct"] = {
            "accuracy": round(100 * (ev["accuracy"] - ro["accuracy"]) / ro["accuracy"], 2),
            "macro_f1": round(100 * (ev["macro_f1"] - ro["macro_f1"]) / ro["macro_f1"], 2),
            "paper_accuracy": PAPER_GAIN,
        }
    out["alerts"] = alerts(test_dir, models / "guard.onnx")
    if clean_dir is not None:
        out["clean"] = clean_run(clean_dir, models / "guard.onnx")
    return out
