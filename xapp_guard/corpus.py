"""A recorded corpus as labelled windows and sequences.

A recording (``xapp-guard record``) is ``events.jsonl.gz`` plus ``labels.json``.
:func:`load` folds the events into windows with the sensor's own code
(:func:`~xapp_guard.features.windows_of`) and labels each window:

- a window of an episode's attacker client, overlapping the episode, in which the client
  acted (published, connected, called): the episode's class;
- a window of an attacker client in which it only received messages, or outside its
  episode, a window of its read-only tap, every window of an episode the broker refused
  (``"refused": true``): ``-1``, left out of training and scoring (an idle subscriber
  looks the same whoever runs it) but kept as context in the sequences;
- every other window: benign (0).

A gRPC attacker is named by its peer address, which the recorder cannot know in
advance: it is the gRPC client whose first call falls inside the episode.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xapp_guard.events import Event
from xapp_guard.features import Window, iter_event_lines, sequences, windows_of
from xapp_guard.scenarios import CLASSES

IGNORED = -1
"""Label of windows left out of training and scoring."""
SLACK_S = 1.5
"""An attacker's windows up to this long after its episode still belong to it (its last
messages and its disconnect arrive after the script returns)."""


@dataclass
class Corpus:
    """Windows of one recording with labels.

    Attributes:
        windows: every window, in time order.
        y: class index per window (:data:`~xapp_guard.scenarios.CLASSES`), or -1.
        part: the part each window falls in (``train``, ``val``, ``clean``, ``""``).
        variant: ``fast`` or ``slow`` for attack windows, ``""`` otherwise.
        episode: index of the episode an attack window belongs to, -1 otherwise.
        labels: the recording's ``labels.json``.
    """

    windows: list[Window]
    y: np.ndarray
    part: np.ndarray
    variant: np.ndarray
    episode: np.ndarray
    labels: dict[str, Any]

    def sequences(self, length: int) -> np.ndarray:
        """``(n, length, N_FEATURES)`` sequences ending at each window."""
        return sequences(self.windows, length)

    def select(self, mask: np.ndarray) -> np.ndarray:
        """Indices where ``mask`` holds and the window is labelled."""
        return np.flatnonzero(mask & (self.y != IGNORED))


def read_events(path: Path) -> list[Event]:
    """The events of ``events.jsonl.gz`` (or a plain ``.jsonl``), in arrival order."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return list(iter_event_lines(fh))


def _grpc_attackers(events: list[Event], episodes: list[dict]) -> dict[int, set[str]]:
    first: dict[str, float] = {}
    for ev in events:
        if ev.kind == "rpc" and ev.client not in first:
            first[ev.client] = ev.t
    out: dict[int, set[str]] = {}
    for i, ep in enumerate(episodes):
        if ep["grpc"]:
            out[i] = {c for c, t in first.items() if ep["t_start"] - 0.1 <= t <= ep["t_end"]}
    return out


def label_windows(
    windows: list[Window], events: list[Event], labels: dict[str, Any], window_s: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(y, part, variant, episode) of each window (see the module docstring)."""
    episodes = labels["episodes"]
    grpc = _grpc_attackers(events, episodes)
    clients: dict[str, list[int]] = {}
    for i, ep in enumerate(episodes):
        names = grpc.get(i, set()) if ep["grpc"] else {ep["client"]}
        if ep.get("tap"):
            clients.setdefault(ep["tap"], [])
        for c in names:
            clients.setdefault(c, []).append(i)
    n = len(windows)
    y = np.zeros(n, np.int64)
    part = np.full(n, "", dtype=object)
    variant = np.full(n, "", dtype=object)
    episode = np.full(n, -1, np.int64)
    parts = labels.get("parts", [])
    for k, win in enumerate(windows):
        t0, t1 = win.w * window_s, (win.w + 1) * window_s
        for p in parts:
            if p["t_start"] <= t0 < p["t_end"]:
                part[k] = p["name"]
        eps = clients.get(win.client)
        if eps is None:
            continue
        y[k] = IGNORED
        for i in eps:
            ep = episodes[i]
            if t1 > ep["t_start"] and t0 < ep["t_end"] + SLACK_S:
                part[k] = ep["part"]
                if win.active and not ep.get("refused"):
                    y[k] = CLASSES.index(ep["class"])
                    variant[k] = ep["variant"]
                    episode[k] = i
    return y, part, variant, episode


def load(directory: Path, network: str | None = None, window_s: float = 1.0) -> Corpus:
    """A recording directory as a labelled :class:`Corpus`."""
    directory = Path(directory)
    labels = json.loads((directory / "labels.json").read_text())
    events = read_events(directory / "events.jsonl.gz")
    windows = windows_of(events, network or labels["network"], window_s=window_s,
                         ignore=(labels["sensor_client"],))  # fmt: skip
    y, part, variant, episode = label_windows(windows, events, labels, window_s)
    return Corpus(windows, y, part, variant, episode, labels)
