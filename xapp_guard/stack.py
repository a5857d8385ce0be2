"""The real control loop as processes, for recording traffic: Mosquitto (logging every
packet), the intent rApp (with its access log), the xApp and the emulator.

The broker runs the deployment's identities (:mod:`servicekit.acl`): no anonymous
clients, one user per component with its password, the ACL that lets each publish only
its own topics. Every client logs in as its user (:meth:`Stack.url_for`): the emulator as
``sim-ric``, the xApp as ``xapp-composer``, the observer and dashboards as ``observer``,
the guard's sensor as ``xapp-guard``. A publish the ACL forbids is dropped by the broker
and logged (``Denied PUBLISH``), which is how attacks from unauthorised identities end.
The recording runs on loopback without TLS: encryption changes nothing the broker logs.

Each component is the project's own console script (``rapp-intent``, ``xapp-composer``,
``sim-ric``) started as a subprocess with its log in the run directory; the guard imports
none of them. Components can be stopped and started again while the others run (an xApp
restart, an emulator restart at another rate, a broker restart with persistence), which
is what the legitimate bursts of a recording are made of.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import structlog

from servicekit.acl import USERS, mosquitto_acl, mosquitto_password_hash
from servicekit.mqtt import MqttClient, Topics
from xapp_guard.config import ROOT, SHIPPED_POLICY
from xapp_guard.sensor import MOSQUITTO_LOG_LINES

log = structlog.get_logger("xapp_guard.stack")

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class StackError(RuntimeError):
    """A component did not start (the message says which, and where its log is)."""


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _log_says_running(path: Path, since: int) -> bool:
    """Mosquitto wrote "... running" to its log after byte ``since``."""
    if not path.exists():
        return False
    with path.open("rb") as fh:
        fh.seek(since)
        return b" running" in fh.read()


def wait_for(pred: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``pred`` every 0.1 s; :class:`StackError` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise StackError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


@dataclass
class Proc:
    """One subprocess with its log file."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    def start(self) -> Proc:
        with self.log_path.open("ab") as fh:
            self.proc = subprocess.Popen(self.argv, stdout=fh, stderr=subprocess.STDOUT,
                                         env={**os.environ, **self.env}, cwd=ROOT)  # fmt: skip
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def console_script(name: str) -> list[str]:
    """The project's console script beside this interpreter."""
    exe = Path(sys.executable).with_name(name)
    if not exe.exists():
        raise StackError(f"{exe} not found: install the project (make venv)")
    return [str(exe)]


def identity_lines(directory: Path, passwords: dict[str, str]) -> list[str]:
    """Mosquitto lines (and the ``passwd`` and ``acl`` files they name, written into
    ``directory``) that admit only the users of ``passwords``, each under the ACL of
    :mod:`servicekit.acl`."""
    passwd, acl = directory / "passwd", directory / "acl"
    passwd.write_text("".join(f"{u}:{mosquitto_password_hash(p)}\n" for u, p in passwords.items()))
    acl.write_text(mosquitto_acl())
    for path in (passwd, acl):
        path.chmod(0o600)
    return ["allow_anonymous false", f"password_file {passwd}", f"acl_file {acl}"]


def broker_conf(port: int, *lines: str) -> str:
    """A loopback Mosquitto listener with ``set_tcp_nodelay`` and ``lines``."""
    return "\n".join([f"listener {port} 127.0.0.1", "set_tcp_nodelay true", *lines]) + "\n"


class Stack:
    """Broker, rApp, xApp, emulator and a passive observer, on loopback.

    Args:
        run_dir: logs, the broker's log and store, the rApp's memory and access log.
        seed: the emulator's seed (network and users).
        rate: the emulator's request rate (req/s).
        network: network name of the topics.
        rapp: start the rApp (without it the xApp falls back to its recent-mean vector).
        policy: the xApp's ONNX policy.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        seed: int,
        rate: float,
        network: str = "default",
        rapp: bool = True,
        policy: Path = SHIPPED_POLICY,
    ):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.seed, self.rate, self.network = seed, rate, network
        self.with_rapp, self.policy = rapp, Path(policy)
        self.broker_port = free_port()
        self.rapp_port = free_port()
        self.xapp_health = free_port()
        self.broker_log = self.run_dir / "mosquitto.log"
        self.access_log = self.run_dir / "rapp-access.jsonl"
        self.procs: dict[str, Proc] = {}
        self.observer: MqttClient | None = None
        self.passwords = {u: secrets.token_hex(12) for u in USERS}
        self._lock = threading.Lock()

    def url_for(self, user: str | None) -> str:
        """The broker URL of ``user`` (with its password), or with no login at all."""
        if user is None:
            return f"mqtt://127.0.0.1:{self.broker_port}"
        return f"mqtt://{user}:{self.passwords[user]}@127.0.0.1:{self.broker_port}"

    @property
    def rapp_target(self) -> str:
        return f"127.0.0.1:{self.rapp_port}"

    # ---- components ---------------------------------------------------------------------
    def start_broker(self) -> None:
        store = self.run_dir / "mosquitto-store"
        store.mkdir(exist_ok=True)
        # Started as root, Mosquitto drops to the "mosquitto" user, which cannot write here.
        user = ["user root"] if os.geteuid() == 0 else []
        conf = self.run_dir / "mosquitto.conf"
        conf.write_text(broker_conf(
            self.broker_port, *user, *identity_lines(self.run_dir, self.passwords),
            "persistence true", f"persistence_location {store}/",
            "max_queued_messages 100000", "max_inflight_messages 100",
            f"log_dest file {self.broker_log}", *MOSQUITTO_LOG_LINES,
        ))  # fmt: skip
        # Readiness comes from the broker's own log: a probing TCP connection would be
        # logged as a client that never sent CONNECT, traffic of its own in the recording.
        since = self.broker_log.stat().st_size if self.broker_log.exists() else 0
        p = Proc("mosquitto", [MOSQUITTO, "-c", str(conf)], self.run_dir / "mosquitto.out")
        self.procs["mosquitto"] = p.start()
        wait_for(lambda: _log_says_running(self.broker_log, since) or not p.alive(), 10,
                 "mosquitto")  # fmt: skip
        if not p.alive():
            raise StackError(f"mosquitto exited; see {p.log_path}")

    def start_rapp(self) -> None:
        env = {"RAPP_HOST": "127.0.0.1", "RAPP_METRICS_PORT": "0", "RAPP_LOG_FORMAT": "json",
               "RAPP_MEMORY_PATH": str(self.run_dir / "rapp-memory.sqlite3"),
               "RAPP_ACCESS_LOG": str(self.access_log), "HF_HUB_OFFLINE": "1",
               # Plaintext loopback gRPC names no caller; "*" stands for the xApp's client
               # certificate, held by the xApp and by its compromised copy alike.
               "RAPP_REPORT_IDENTITIES": "*",
               "TRANSFORMERS_OFFLINE": "1", "RAPP_TORCH_THREADS": "1"}  # fmt: skip
        argv = [*console_script("rapp-intent"), "serve", "--models", "minilm",
                "--port", str(self.rapp_port)]  # fmt: skip
        p = Proc("rapp-intent", argv, self.run_dir / "rapp-intent.log", env)
        self.procs["rapp"] = p.start()
        wait_for(lambda: _rapp_answers(self.rapp_target) or not p.alive(), 300, "the rApp's models")
        if not p.alive():
            raise StackError(f"the rApp exited; see {p.log_path}")

    def start_xapp(self) -> None:
        env = {"XAPP_BROKER": self.url_for("xapp-composer"), "XAPP_LOG_FORMAT": "json",
               "XAPP_RECONNECT_MIN_DELAY": "0.2", "XAPP_RECONNECT_MAX_DELAY": "2.0"}  # fmt: skip
        rapp = self.rapp_target if self.with_rapp else f"127.0.0.1:{free_port()}"
        argv = [*console_script("xapp-composer"), "run", "--rapp", rapp,
                "--policy", str(self.policy), "--network", self.network,
                "--health-host", "127.0.0.1", "--health-port", str(self.xapp_health)]  # fmt: skip
        p = Proc("xapp-composer", argv, self.run_dir / "xapp-composer.log", env)
        self.procs["xapp"] = p.start()
        wait_for(lambda: self._xapp_ready() or not p.alive(), 120, "xApp ready")
        if not p.alive():
            raise StackError(f"the xApp exited; see {p.log_path}")

    def start_sim(self, rate: float | None = None) -> None:
        self.rate = self.rate if rate is None else rate
        argv = [*console_script("sim-ric"), "run", "--network", self.network,
                "--seed", str(self.seed), "--rate", f"{self.rate:g}"]  # fmt: skip
        env = {"SIM_BROKER": self.url_for("sim-ric"), "SIM_LOG_FORMAT": "json"}
        self.procs["sim"] = Proc("sim-ric", argv, self.run_dir / "sim-ric.log", env).start()

    def start_observer(self, name: str = "lameta-observer") -> None:
        """A passive client watching decisions and outcomes (a dashboard, a logger)."""
        topics = Topics.for_network(self.network)
        c = MqttClient(self.url_for("observer"), "observer", client_id=name, reconnect_min_delay_s=0.2,
                       reconnect_max_delay_s=2.0)  # fmt: skip
        c.subscribe(topics.control, lambda t, p: None, qos=1)
        c.subscribe(topics.outcomes, lambda t, p: None, qos=1)
        c.start()
        c.wait_connected(10)
        self.observer = c

    def stop_observer(self) -> None:
        if self.observer is not None:
            self.observer.stop(timeout=2.0)
            self.observer = None

    def stop(self, name: str) -> None:
        p = self.procs.get(name)
        if p is not None:
            p.stop()

    def _xapp_ready(self) -> bool:
        """The xApp's readiness checks pass (without an rApp, all but the rApp's)."""
        try:
            url = f"http://127.0.0.1:{self.xapp_health}/ric/v1/health/ready"
            checks = httpx.get(url, timeout=1).json()
        except (httpx.HTTPError, ValueError):
            return False
        if not self.with_rapp:
            checks.pop("rapp", None)
        checks.pop("ready", None)
        return bool(checks) and all(checks.values())

    # ---- whole ---------------------------------------------------------------------------
    def __enter__(self) -> Stack:
        try:
            self.start_broker()
            if self.with_rapp:
                self.start_rapp()
            self.start_xapp()
            self.start_sim()
            self.start_observer()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        self.stop_observer()
        for name in ("sim", "xapp", "rapp", "mosquitto"):
            with contextlib.suppress(Exception):
                self.stop(name)

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_alive(self, names: Sequence[str] = ("mosquitto", "xapp", "sim")) -> None:
        """Raise :class:`StackError` if a component that should run has died."""
        for n in names:
            p = self.procs.get(n)
            if p is not None and p.proc is not None and not p.alive():
                raise StackError(f"{p.name} died (exit {p.proc.returncode}); see {p.log_path}")


def _rapp_answers(target: str) -> bool:
    """The rApp lists its models: its E-LAMs are loaded (while they load it answers
    UNAVAILABLE)."""
    import grpc

    from lameta_proto.v1 import intent_pb2, intent_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        call = intent_pb2_grpc.IntentServiceStub(channel).ListModels
        return call.future(intent_pb2.ListModelsRequest(), timeout=1.0).exception() is None
