"""Helpers of the MQTT tests: a real Mosquitto process, the service as a subprocess, and a
recording test client. Waits poll with deadlines; nothing sleeps in place of a check."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from servicekit import codec
from servicekit.mqtt import MqttClient, Topics, loopback_mosquitto_conf
from support.processes import ManagedProcess

ROOT = Path(__file__).resolve().parents[2]
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    """A TCP port that was free a moment ago on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(pred: Callable[[], object], timeout: float, what: str, step: float = 0.02):
    """Poll ``pred`` until it returns a truthy value (returned) or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(step)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Mosquitto:
    """A Mosquitto broker process on a fixed loopback port with a temporary config."""

    def __init__(self, workdir: Path, port: int | None = None):
        self.port = port or free_port()
        self.workdir = workdir
        self.conf = workdir / f"mosquitto-{self.port}.conf"
        self.conf.write_text(loopback_mosquitto_conf(self.port))
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> Mosquitto:
        self.starts += 1
        log = (self.workdir / f"mosquitto-{self.port}-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        wait_until(
            lambda: _port_open(self.port) or self.proc.poll() is not None,
            timeout,
            f"mosquitto on port {self.port}",
        )
        if self.proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited with {self.proc.returncode}; see {log.name}")
        return self

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), like a crashed broker."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


@contextmanager
def running_mosquitto(workdir: Path) -> Iterator[Mosquitto]:
    """A Mosquitto on a free loopback port for the duration of the block."""
    assert Path(MOSQUITTO).exists(), "mosquitto is required"
    broker = Mosquitto(workdir).start()
    try:
        yield broker
    finally:
        broker.stop()


class Recorder:
    """A test client on one network: records decoded states, requests and outcomes."""

    def __init__(self, url: str, network: str = "default", name: str = "tester"):
        self.topics = Topics.for_network(network)
        self.lock = threading.Lock()
        self.states: list[codec.NetworkState] = []
        self.requests: list[codec.ServiceRequest] = []
        self.outcomes: list[codec.Outcome] = []
        self.status: list[bytes] = []
        self.errors: list[str] = []
        self.client = MqttClient(url, name, reconnect_min_delay_s=0.2, reconnect_max_delay_s=1.0)
        self.client.subscribe(self.topics.state, self._rec(self.states, codec.decode_state))
        self.client.subscribe(self.topics.requests, self._rec(self.requests, codec.decode_request))
        self.client.subscribe(self.topics.outcomes, self._rec(self.outcomes, codec.decode_outcome))
        self.client.subscribe("lameta/v1/status/sim-ric", self._status)
        # The client's own retained "online" comes back once its subscriptions are active.
        self.subscribed = threading.Event()
        self.client.subscribe(f"lameta/v1/status/{name}", lambda t, p: self.subscribed.set())

    def _rec(self, into: list, decode: Callable):
        def handler(topic: str, payload: bytes) -> None:
            try:
                msg = decode(payload)
            except codec.DecodeError as exc:
                with self.lock:
                    self.errors.append(f"{topic}: {exc}")
                return
            with self.lock:
                into.append(msg)

        return handler

    def _status(self, topic: str, payload: bytes) -> None:
        with self.lock:
            self.status.append(payload)

    def start(self, timeout: float = 10.0) -> Recorder:
        self.client.start()
        assert self.client.wait_connected(timeout), (
            f"test client not connected: {self.client.last_error}"
        )
        assert self.subscribed.wait(timeout), "test client subscriptions not active"
        return self

    def stop(self) -> None:
        self.client.stop(timeout=2.0)

    def send(self, payload: bytes) -> None:
        assert self.client.publish(self.topics.control, payload, qos=1)

    def decide(self, request_id: str, chain: Sequence[int], **fields) -> None:
        self.send(codec.encode(codec.ControlDecision(request_id=request_id, chain=chain, **fields)))

    def snapshot(self) -> tuple[list, list, list]:
        with self.lock:
            return list(self.states), list(self.requests), list(self.outcomes)

    def outcomes_for(self, request_id: str) -> list[codec.Outcome]:
        with self.lock:
            return [o for o in self.outcomes if o.request_id == request_id]

    def wait_outcome(self, pred: Callable[[codec.Outcome], bool], timeout: float, what: str):
        def find():
            with self.lock:
                return next((o for o in self.outcomes if pred(o)), None)

        return wait_until(find, timeout, what)

    def wait_outcome_count(self, n: int, timeout: float) -> list[codec.Outcome]:
        def enough():
            with self.lock:
                return list(self.outcomes) if len(self.outcomes) >= n else None

        return wait_until(enough, timeout, f"{n} outcomes")

    def latest_state(self) -> codec.StateArrays:
        with self.lock:
            assert self.states, "no state received"
            return codec.StateArrays.from_proto(self.states[-1])


def usable_chain(state: codec.StateArrays, chain_types: Sequence[int], pick: int = 0) -> list[int]:
    """An evaluable chain from a decoded state: an available, stable agent of each type."""
    chain = []
    for t in chain_types:
        cand = state.usable(t)
        assert len(cand), f"no usable agent of type {t} in the state"
        chain.append(int(cand[pick % len(cand)]))
    return chain


def agent_of_other_type(state: codec.StateArrays, wanted: int) -> int:
    return int(next(i for i, t in enumerate(state.types) if t != wanted))


class ServiceProcess(ManagedProcess):
    """``sim-ric run`` as a real subprocess, its output (JSON logs) kept in a file."""

    def __init__(self, args: Sequence[str], workdir: Path, env: dict[str, str] | None = None):
        super().__init__(
            "sim-ric", ["run", *args], workdir, env={"SIM_LOG_FORMAT": "json", **(env or {})}
        )


def sim_in_parts(broker: str, network: str, workdir: Path, agents: int = 81) -> ServiceProcess:
    """``sim-ric run`` on a network above its whole-state threshold (lowered to fewer than
    ``agents`` through ``SIM_STATE_FULL_MAX_AGENTS``, the setting itself), so that each
    state goes out as a delta of a chunked keyframe: no requests, a state every 0.2 s,
    for at most a minute."""
    return ServiceProcess(
        ["--broker", broker, "--network", network, "--agents", str(agents), "--rate", "0",
         "--state-period", "0.2", "--duration", "60"],
        workdir,
        env={"SIM_STATE_FULL_MAX_AGENTS": str(agents - 1), "SIM_STATE_CHUNK_BYTES": "2048"},
    )  # fmt: skip
