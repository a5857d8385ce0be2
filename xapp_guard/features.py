"""Flow windows per client: the features the detector sees, KDD-style.

Every event (:mod:`xapp_guard.events`) belongs to one client and one window
``w = floor(t / window_s)`` (1 s by default). :class:`Featurizer` folds a time-ordered
event stream into one :class:`Window` per client and window in which the client did or
received anything; :class:`Reorder` puts the events of the sensor's three sources
(broker log, payloads, access log) in time order first. The same two classes run online
(``xapp-guard run``) and offline over a recorded corpus, so training and serving see
identical features.

==================  =====  ===========================================================
name                unit   how it is computed (for client c in window w)
==================  =====  ===========================================================
pub_req             msgs   broker lines "Received PUBLISH from c" on ``.../requests``
pub_req_bytes       bytes  their payload bytes (the broker line's "(N bytes)")
pub_ctl             msgs   the same on ``.../control`` (decisions)
pub_ctl_bytes       bytes  their payload bytes
pub_out             msgs   the same on ``.../outcomes``
pub_out_bytes       bytes  their payload bytes
pub_state           msgs   the same on ``.../state``
pub_other           msgs   publishes on any other topic (status, policy, foreign topics)
pub_bytes_max       bytes  largest single payload c published
recv                msgs   broker lines "Sending PUBLISH to c" (deliveries to c)
recv_bytes          bytes  their payload bytes
iat_mean            s      mean gap between c's consecutive actions (publish, connect,
                           gRPC call) within w; 0 with fewer than two actions
iat_min             s      smallest such gap
iat_cv              1      standard deviation / mean of the gaps (0 with < 2 gaps)
replay_own          msgs   requests or decisions whose request id c already published on
                           that topic; outcomes repeating c's own (request id, code)
dup_other           msgs   the same, where another client published it first
unknown_id          msgs   decisions and outcomes for a request id never seen on
                           ``.../requests``
undecodable         msgs   payloads on requests/control/outcomes the codec refuses
refused             msgs   refusals (outcome codes other than served, rejected_by_xapp,
                           expired, shutdown) of requests whose latest decision came from c
orphaned            msgs   ``unknown_request`` refusals of request ids c published
connects            1      "New client connected ... as c"
disconnects         1      any end of c's connection
abrupt              1      ends without a DISCONNECT packet (closed, timeout, socket
                           error, session takeover, protocol error, not authorised)
denied              1      publishes, subscriptions or connections the broker refused
subscribes          1      SUBSCRIBE packets of c
rpc_translate       calls  Translate calls of c (gRPC peer or mTLS identity)
rpc_report          calls  ReportOutcome calls
rpc_other           calls  other gRPC calls (TranslateBatch, ListModels, health)
rpc_errors          calls  calls answered with a status other than OK
rpc_bytes           bytes  request bytes of c's calls
report_unbacked     calls  ReportOutcome calls whose request id had no ``served`` outcome
                           on ``.../outcomes`` (up to the reorder lag after the call)
report_replay       calls  ReportOutcome calls repeating a request id already reported
net_connects        1      connects of all clients in w (context, same for every client)
net_requests        msgs   requests published on the network in w by anyone (context)
==================  =====  ===========================================================

Request ids are remembered for the last ``id_capacity`` ids per table (oldest forgotten
first), so memory stays bounded on a long run.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from xapp_guard.events import ABRUPT, PAYLOAD_TOPICS, Event, topic_kind


@dataclass(frozen=True)
class Feature:
    """One column of a window: name, unit and how it is computed."""

    name: str
    unit: str
    how: str


def _parse_table(doc: str) -> tuple[Feature, ...]:
    """The feature table of this module's docstring (one source for code and docs)."""
    rows: list[list[str]] = []
    lines = doc.split("==================  =====")[2].splitlines()[1:]
    for line in lines:
        if line.startswith("=="):
            break
        name, unit, how = line[:18].strip(), line[20:25].strip(), line[27:].strip()
        if name:
            rows.append([name, unit, how])
        elif rows:
            rows[-1][2] += " " + how
    return tuple(Feature(*r) for r in rows)


FEATURES: tuple[Feature, ...] = _parse_table(__doc__ or "")
"""The window's columns, in order."""
NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
INDEX: dict[str, int] = {n: i for i, n in enumerate(NAMES)}
N_FEATURES = len(FEATURES)

RESOLVING = frozenset({"served", "rejected_by_xapp", "expired", "shutdown"})
"""Outcome codes that settle a request (sim_ric's); any other code is a refusal."""


@dataclass(frozen=True)
class Window:
    """One client's features in one window.

    Attributes:
        client: the client.
        w: window index (``floor(t / window_s)``).
        x: the features, ``(N_FEATURES,)`` float32, in :data:`NAMES` order.
        active: the client did something itself (not only received messages).
    """

    client: str
    w: int
    x: np.ndarray
    active: bool


class _Bounded:
    """An insertion-ordered map that forgets its oldest keys beyond a capacity."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.data: OrderedDict[object, object] = OrderedDict()

    def get(self, key: object, default: object = None) -> object:
        return self.data.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def set(self, key: object, value: object) -> None:
        self.data[key] = value
        if len(self.data) > self.capacity:
            self.data.popitem(last=False)


@dataclass
class _Acc:
    counts: np.ndarray = field(default_factory=lambda: np.zeros(N_FEATURES, np.float64))
    actions: list[float] = field(default_factory=list)
    active: bool = False

    def add(self, name: str, n: float = 1.0) -> None:
        self.counts[INDEX[name]] += n


class Featurizer:
    """Folds time-ordered events into per-client windows.

    Args:
        network: the network whose topics are watched.
        window_s: window length (s).
        ignore: clients whose events are left out (the sensor itself).
        id_capacity: request ids remembered per table.
    """

    def __init__(
        self,
        network: str,
        window_s: float = 1.0,
        ignore: Iterable[str] = (),
        id_capacity: int = 200_000,
    ):
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.network = network
        self.window_s = float(window_s)
        self.ignore = frozenset(ignore)
        self._requester = _Bounded(id_capacity)  # rid -> first client publishing the request
        self._deciders = _Bounded(id_capacity)  # rid -> set of clients that decided it
        self._latest_decider = _Bounded(id_capacity)  # rid -> latest decider
        self._outcomes = _Bounded(id_capacity)  # (rid, code) -> first publisher
        self._served = _Bounded(id_capacity)  # rids with a served outcome
        self._reported = _Bounded(id_capacity)  # rids reported through ReportOutcome
        self._open: int | None = None  # the window being folded
        self._done = -math.inf  # the last window closed
        self._acc: dict[str, _Acc] = {}
        self.late_events = 0
        """Events older than the open window (dropped; the reorder lag was too short)."""

    def window_of(self, t: float) -> int:
        """Window index of time ``t``."""
        return math.floor(t / self.window_s)

    # ---- input ----------------------------------------------------------------------
    def note_arrival(self, ev: Event) -> None:
        """Record what must be known before earlier events are folded (served outcomes:
        a ReportOutcome may be logged a moment before the outcome it relays)."""
        if (
            ev.kind == "publish"
            and ev.code == "served"
            and ev.rid
            and topic_kind(ev.topic, self.network) == "outcomes"
        ):
            self._served.set(ev.rid, True)

    def feed(self, ev: Event) -> list[Window]:
        """Fold one event (times must not decrease); returns the windows it closed."""
        if ev.client in self.ignore:
            return []
        w = self.window_of(ev.t)
        closed: list[Window] = []
        if w <= self._done or (self._open is not None and w < self._open):
            self.late_events += 1
            return []
        if self._open is not None and w > self._open:
            closed = self._close_open()
        self._open = w
        self.note_arrival(ev)
        self._apply(ev)
        return closed

    def close(self, until_t: float) -> list[Window]:
        """Close the open window if it ends at or before ``until_t`` (idle periods)."""
        if self._open is not None and (self._open + 1) * self.window_s <= until_t:
            out = self._close_open()
            self._open = None
            return out
        return []

    # ---- folding --------------------------------------------------------------------
    def _acc_of(self, client: str) -> _Acc:
        acc = self._acc.get(client)
        if acc is None:
            acc = self._acc[client] = _Acc()
        return acc

    def _apply(self, ev: Event) -> None:
        acc = self._acc_of(ev.client)
        k = ev.kind
        if k == "deliver":
            acc.add("recv")
            acc.add("recv_bytes", ev.size)
            return
        acc.active = True
        if k == "connect":
            acc.add("connects")
            acc.actions.append(ev.t)
        elif k == "disconnect":
            acc.add("disconnects")
            if ev.code in ABRUPT:
                acc.add("abrupt")
            if ev.code == "not_authorised":
                acc.add("denied")
        elif k == "denied":
            acc.add("denied")
        elif k == "subscribe":
            acc.add("subscribes")
        elif k == "publish":
            self._publish(acc, ev)
        elif k == "rpc":
            self._rpc(acc, ev)

    def _publish(self, acc: _Acc, ev: Event) -> None:
        acc.actions.append(ev.t)
        kind = topic_kind(ev.topic, self.network)
        short = {"requests": "req", "control": "ctl", "outcomes": "out"}.get(kind)
        if short is not None:
            acc.add(f"pub_{short}")
            acc.add(f"pub_{short}_bytes", ev.size)
        elif kind == "state":
            acc.add("pub_state")
        else:
            acc.add("pub_other")
        i = INDEX["pub_bytes_max"]
        acc.counts[i] = max(acc.counts[i], ev.size)
        if kind not in PAYLOAD_TOPICS:
            return
        if ev.decoded not in ("", "ok"):
            acc.add("undecodable")
        rid, c = ev.rid, ev.client
        if not rid:
            return
        if kind == "requests":
            first = self._requester.get(rid)
            if first is None:
                self._requester.set(rid, c)
            else:
                acc.add("replay_own" if first == c else "dup_other")
        elif kind == "control":
            if rid not in self._requester:
                acc.add("unknown_id")
            deciders = self._deciders.get(rid)
            if deciders is None:
                self._deciders.set(rid, {c})
            else:
                acc.add("replay_own" if c in deciders else "dup_other")
                deciders.add(c)  # type: ignore[attr-defined]
            self._latest_decider.set(rid, c)
        else:
            if rid not in self._requester:
                acc.add("unknown_id")
            first = self._outcomes.get((rid, ev.code))
            if first is None:
                self._outcomes.set((rid, ev.code), c)
            else:
                acc.add("replay_own" if first == c else "dup_other")
            if ev.code and ev.code not in RESOLVING:
                decider = self._latest_decider.get(rid)
                if isinstance(decider, str) and decider not in self.ignore:
                    self._acc_of(decider).add("refused")
                if ev.code == "unknown_request":
                    requester = self._requester.get(rid)
                    if isinstance(requester, str) and requester not in self.ignore:
                        self._acc_of(requester).add("orphaned")

    def _rpc(self, acc: _Acc, ev: Event) -> None:
        acc.actions.append(ev.t)
        method = ev.topic.rsplit("/", 1)[-1]
        if method == "Translate":
            acc.add("rpc_translate")
        elif method == "ReportOutcome":
            acc.add("rpc_report")
            if not ev.rid or ev.rid not in self._served:
                acc.add("report_unbacked")
            if ev.rid:
                if ev.rid in self._reported:
                    acc.add("report_replay")
                else:
                    self._reported.set(ev.rid, True)
        else:
            acc.add("rpc_other")
        if ev.code and ev.code != "OK":
            acc.add("rpc_errors")
        acc.add("rpc_bytes", ev.size)

    def _close_open(self) -> list[Window]:
        accs, self._acc = self._acc, {}
        self._done = self._open if self._open is not None else self._done
        if not accs:
            return []
        net_connects = sum(a.counts[INDEX["connects"]] for a in accs.values())
        net_requests = sum(a.counts[INDEX["pub_req"]] for a in accs.values())
        out = []
        for client in sorted(accs):
            a = accs[client]
            x = a.counts
            gaps = np.diff(np.sort(np.asarray(a.actions)))
            if len(gaps):
                mean = float(gaps.mean())
                x[INDEX["iat_mean"]] = mean
                x[INDEX["iat_min"]] = float(gaps.min())
                x[INDEX["iat_cv"]] = float(gaps.std() / mean) if len(gaps) > 1 and mean > 0 else 0
            x[INDEX["net_connects"]] = net_connects
            x[INDEX["net_requests"]] = net_requests
            out.append(Window(client, int(self._open or 0), x.astype(np.float32), a.active))
        return out


class Reorder:
    """Puts events from several sources in time order, ``lag`` seconds behind the newest.

    Events are released once the newest arrival is ``lag`` seconds past them, oldest
    first, into a :class:`Featurizer`; served outcomes are noted on arrival (see
    :meth:`Featurizer.note_arrival`). Offline, feeding a recorded stream in its recorded
    (arrival) order reproduces what the online sensor computed.

    Args:
        featurizer: where released events go.
        lag: seconds an event waits for earlier ones from slower sources.
    """

    def __init__(self, featurizer: Featurizer, lag: float = 1.5):
        self.featurizer = featurizer
        self.lag = float(lag)
        self._heap: list[tuple[float, int, Event]] = []
        self._n = 0
        self.now = -math.inf

    def push(self, ev: Event) -> list[Window]:
        """Add one event; returns the windows closed by what it released."""
        self.featurizer.note_arrival(ev)
        heapq.heappush(self._heap, (ev.t, self._n, ev))
        self._n += 1
        return self.advance(ev.t)

    def advance(self, now: float) -> list[Window]:
        """Release what is ``lag`` old at ``now`` and close windows that ended by then."""
        self.now = max(self.now, now)
        horizon = self.now - self.lag
        out: list[Window] = []
        while self._heap and self._heap[0][0] <= horizon:
            out.extend(self.featurizer.feed(heapq.heappop(self._heap)[2]))
        out.extend(self.featurizer.close(horizon))
        return out

    def flush(self) -> list[Window]:
        """Release everything and close the last window."""
        out: list[Window] = []
        while self._heap:
            out.extend(self.featurizer.feed(heapq.heappop(self._heap)[2]))
        out.extend(self.featurizer.close(math.inf))
        return out


def windows_of(
    events: Iterable[Event], network: str, *, window_s: float = 1.0, lag: float = 1.5,
    ignore: Iterable[str] = (),
) -> list[Window]:  # fmt: skip
    """Every window of a recorded event stream (in arrival order), as the sensor makes them."""
    r = Reorder(Featurizer(network, window_s, ignore), lag)
    out: list[Window] = []
    for ev in events:
        out.extend(r.push(ev))
    out.extend(r.flush())
    return out


# --------------------------------------------------------------------------------------
# Sequences of windows: the detector's input
# --------------------------------------------------------------------------------------
def sequences(windows: list[Window], length: int) -> np.ndarray:
    """For each window, the client's last ``length`` windows ending with it.

    Windows of the client missing from the list (it was silent) are zeros.

    Returns:
        ``(len(windows), length, N_FEATURES)`` float32.
    """
    by_client: dict[str, dict[int, np.ndarray]] = {}
    for win in windows:
        by_client.setdefault(win.client, {})[win.w] = win.x
    out = np.zeros((len(windows), length, N_FEATURES), np.float32)
    for i, win in enumerate(windows):
        own = by_client[win.client]
        for k in range(length):
            x = own.get(win.w - (length - 1 - k))
            if x is not None:
                out[i, k] = x
    return out


class History:
    """The online counterpart of :func:`sequences`: each client's recent windows.

    Args:
        length: windows per sequence.
    """

    def __init__(self, length: int):
        self.length = length
        self._recent: dict[str, dict[int, np.ndarray]] = {}

    def push(self, win: Window) -> np.ndarray:
        """Add a window; returns its sequence ``(length, N_FEATURES)``."""
        own = self._recent.setdefault(win.client, {})
        own[win.w] = win.x
        for w in [w for w in own if w <= win.w - self.length]:
            del own[w]
        seq = np.zeros((self.length, N_FEATURES), np.float32)
        for k in range(self.length):
            x = own.get(win.w - (self.length - 1 - k))
            if x is not None:
                seq[k] = x
        return seq

    def forget_idle(self, w: int) -> None:
        """Drop clients with no window in the last ``length`` windows before ``w``."""
        for client in [c for c, own in self._recent.items() if max(own) <= w - self.length]:
            del self._recent[client]

    def __len__(self) -> int:
        return len(self._recent)


def iter_event_lines(lines: Iterable[str]) -> Iterator[Event]:
    """Events of a JSON Lines corpus (one :meth:`Event.to_json` per line)."""
    import json

    for line in lines:
        if line.strip():
            yield Event.from_json(json.loads(line))
