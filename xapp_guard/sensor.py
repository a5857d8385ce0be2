"""The sensor: who did what on the control plane, as a stream of :class:`Event`.

Three sources, each on its own thread, all stamped with the sensor's clock when read:

- :class:`FileTail` follows the broker's log file (Mosquitto, ``log_type all``; it flushes
  every line) and the rApp's access log (``RAPP_ACCESS_LOG``), surviving truncation and
  rotation (the file is reopened when it shrinks or is replaced);
- a read-only MQTT subscription to the network's requests, control and outcomes topics
  (QoS 1) delivers the payloads: the request id a decision is for, an outcome's code;
- :class:`Joiner` pairs each broker line "Received PUBLISH from <client> ... '<topic>'
  ... (N bytes)" with the next payload the subscription got on that topic. Mosquitto
  forwards one topic's messages to a QoS 1 subscriber in the order it received them, so
  the two sequences line up; the payload's length must equal the line's byte count,
  and when it does not (a retained message replayed at subscribe, a message the broker
  dropped for a slow subscriber) the older of the two is dropped and counted, and the
  pairing resumes. A line whose payload does not come within ``join_timeout`` goes on
  without payload fields (``decoded = ""``).

Why the broker's log: an MQTT subscriber never learns who published a message; the
broker does, and writes it down. The embedded amqtt broker does not log publishes with
their client; the guard therefore watches deployments that run Mosquitto (as
``deploy/`` does), with ``log_type all`` and ``log_dest file``.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path

import structlog

from servicekit.mqtt import MqttClient, Topics
from xapp_guard.events import (
    PAYLOAD_TOPICS,
    Event,
    parse_access_line,
    parse_mosquitto_line,
    payload_digest,
    payload_info,
    topic_kind,
)

log = structlog.get_logger("xapp_guard.sensor")

MOSQUITTO_LOG_LINES = ("log_type all", "connection_messages true", "log_timestamp true")
"""What a Mosquitto configuration needs for the sensor (plus ``log_dest file <path>``)."""


class FileTail:
    """Follows a text file line by line on a thread.

    Args:
        path: the file (it may not exist yet).
        on_line: called with each complete line (without the newline).
        from_start: read what is already there (default: only what is appended).
        poll_s: sleep between reads when there is nothing new.
    """

    def __init__(
        self,
        path: str | Path,
        on_line: Callable[[str], None],
        *,
        from_start: bool = False,
        poll_s: float = 0.02,
    ):
        self.path = Path(path)
        self.on_line = on_line
        self.from_start = from_start
        self.poll_s = poll_s
        self.lines = 0
        self.reopened = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> FileTail:
        self._thread = threading.Thread(target=self._run, name=f"tail-{self.path.name}",
                                        daemon=True)  # fmt: skip
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _open(self, first: bool):
        try:
            fh = self.path.open("r", encoding="utf-8", errors="replace", newline="")
        except FileNotFoundError:
            return None, None
        if first and not self.from_start:
            fh.seek(0, os.SEEK_END)
        return fh, os.fstat(fh.fileno()).st_ino

    def _run(self) -> None:
        fh, inode = self._open(first=True)
        partial = ""
        while not self._stop.is_set():
            if fh is None:
                time.sleep(self.poll_s)
                fh, inode = self._open(first=False)
                continue
            chunk = fh.readline()
            if chunk:
                partial += chunk
                if partial.endswith("\n"):
                    self.lines += 1
                    try:
                        self.on_line(partial.rstrip("\r\n"))
                    except Exception:
                        log.exception("sensor_line_handler_failed", path=str(self.path))
                    partial = ""
                continue
            try:
                st = self.path.stat()
                replaced = st.st_ino != inode or st.st_size < fh.tell()
            except FileNotFoundError:
                replaced = False
            if replaced:  # rotated or truncated: read the new file from its start
                fh.close()
                fh, inode = self._open(first=False)
                partial = ""
                self.reopened += 1
                continue
            time.sleep(self.poll_s)
        if fh is not None:
            fh.close()


class Joiner:
    """Pairs the broker's publish lines with the subscription's payloads, per topic.

    Args:
        network: the network whose payload topics are decoded.
        emit: receives every finished event.
        join_timeout: seconds a line waits for its payload (and a payload for its line).
        clock: the sensor's clock.
    """

    def __init__(
        self,
        network: str,
        emit: Callable[[Event], None],
        join_timeout: float = 1.0,
        clock: Callable[[], float] = time.time,
    ):
        self.network = network
        self.emit = emit
        self.join_timeout = join_timeout
        self.clock = clock
        self._lines: dict[str, deque[Event]] = {}
        self._payloads: dict[str, deque[tuple[float, bytes]]] = {}
        self._lock = threading.Lock()
        self.counters: Counter[str] = Counter()
        """joined, line_timeouts, payload_timeouts, mismatches."""

    def line(self, ev: Event) -> None:
        """A broker event; publishes on payload topics wait for their payload."""
        if ev.kind != "publish" or topic_kind(ev.topic, self.network) not in PAYLOAD_TOPICS:
            self.emit(ev)
            return
        with self._lock:
            self._lines.setdefault(ev.topic, deque()).append(ev)
            done = self._match(ev.topic)
        for e in done:
            self.emit(e)

    def payload(self, topic: str, payload: bytes) -> None:
        """A payload the subscription received."""
        with self._lock:
            self._payloads.setdefault(topic, deque()).append((self.clock(), payload))
            done = self._match(topic)
        for e in done:
            self.emit(e)

    def _match(self, topic: str) -> list[Event]:
        lines = self._lines.get(topic)
        payloads = self._payloads.get(topic)
        out: list[Event] = []
        while lines and payloads:
            ev = lines[0]
            t_payload, data = payloads[0]
            if len(data) != ev.size:
                self.counters["mismatches"] += 1
                if t_payload < ev.t:
                    payloads.popleft()
                else:
                    out.append(lines.popleft())
                continue
            lines.popleft()
            payloads.popleft()
            kind = topic_kind(topic, self.network)
            rid, code, decoded = payload_info(kind, data)
            digest = payload_digest(data) if kind == "control" else ""
            out.append(Event(ev.t, ev.kind, ev.client, ev.topic, ev.size, code, rid, decoded,
                             digest))  # fmt: skip
            self.counters["joined"] += 1
        return out

    def expire(self) -> None:
        """Let lines whose payload did not come go on without it; drop stale payloads."""
        cutoff = self.clock() - self.join_timeout
        out: list[Event] = []
        with self._lock:
            for lines in self._lines.values():
                while lines and lines[0].t < cutoff:
                    out.append(lines.popleft())
                    self.counters["line_timeouts"] += 1
            for payloads in self._payloads.values():
                while payloads and payloads[0][0] < cutoff:
                    payloads.popleft()
                    self.counters["payload_timeouts"] += 1
        for e in out:
            self.emit(e)


class Sensor:
    """The three sources and the joiner; events go to ``events`` (a queue).

    Args:
        network: the watched network.
        broker_log: Mosquitto's log file.
        client: the read-only MQTT client for the payloads (not started), or None to go
            without payloads (counts and bytes only).
        access_log: the rApp's access log, or None.
        join_timeout: see :class:`Joiner`.
        from_start: read the files from their start (a replay of a recorded run).
    """

    def __init__(
        self,
        network: str,
        broker_log: str | Path,
        client: MqttClient | None,
        access_log: str | Path | None = None,
        *,
        join_timeout: float = 1.0,
        from_start: bool = False,
    ):
        self.network = network
        self.events: queue.Queue[Event] = queue.Queue()
        self.client = client
        self.joiner = Joiner(network, self.events.put, join_timeout)
        self.client_id = client.client_id if client is not None else ""
        self.unparsed_access_lines = 0
        self._tails = [FileTail(broker_log, self._broker_line, from_start=from_start)]
        if access_log is not None:
            self._tails.append(FileTail(access_log, self._access_line, from_start=from_start))
        if client is not None:
            topics = Topics.for_network(network)
            for t in (topics.requests, topics.control, topics.outcomes):
                client.subscribe(t, self.joiner.payload, qos=1)
        self._stop = threading.Event()
        self._expirer: threading.Thread | None = None

    def _broker_line(self, line: str) -> None:
        ev = parse_mosquitto_line(line, t=time.time())
        if ev is not None:
            self.joiner.line(ev)

    def _access_line(self, line: str) -> None:
        if not line.strip():
            return
        ev = parse_access_line(line)
        if ev is None:
            self.unparsed_access_lines += 1
            log.warning("access_line_unreadable", line=line[:200])
            return
        self.events.put(Event(time.time(), ev.kind, ev.client, ev.topic, ev.size, ev.code, ev.rid))

    def start(self, connect_timeout: float = 10.0) -> Sensor:
        """Subscribe (waiting up to ``connect_timeout``), then start following the logs."""
        if self.client is not None:
            self.client.start()
            if not self.client.wait_connected(connect_timeout):
                log.warning("sensor_broker_unreachable", error=self.client.last_error)
        for tail in self._tails:
            tail.start()
        self._expirer = threading.Thread(target=self._expire_loop, name="sensor-join",
                                         daemon=True)  # fmt: skip
        self._expirer.start()
        return self

    def _expire_loop(self) -> None:
        while not self._stop.wait(0.1):
            self.joiner.expire()

    def stop(self) -> None:
        self._stop.set()
        for tail in self._tails:
            tail.stop()
        if self._expirer is not None:
            self._expirer.join(2)
        self.joiner.join_timeout = 0.0
        self.joiner.expire()
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.stop(timeout=2.0)

    def stats(self) -> dict[str, int]:
        """Lines read and reopenings (rotation, truncation) per file, join counters,
        unreadable access lines."""
        out = {f"lines_{t.path.name}": t.lines for t in self._tails}
        out.update({f"reopened_{t.path.name}": t.reopened for t in self._tails})
        out.update(self.joiner.counters)
        out["unparsed_access_lines"] = self.unparsed_access_lines
        return out
