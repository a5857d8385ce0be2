"""Helpers of the xApp loop tests: a policy to run, and the three services as processes.

The policy: the shipped ``models/policy/srl-general.onnx`` when it exists (the end-to-end
tests), else one exported from a freshly initialised GCN actor-critic; exporting takes
about a minute, so it is cached in the temporary directory under a hash of the code that
defines the ONNX interface (a change of that code exports again). The unit tests always
use the exported one: their expectations depend on a fixed policy.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import httpx

from lameta_stack.stack import grpc_serving
from servicekit.mqtt import loopback_mosquitto_conf
from support.mqtt import (
    Mosquitto,
    Recorder,
    ServiceProcess,
    free_port,
    wait_until,
)
from support.processes import ManagedProcess

ROOT = Path(__file__).resolve().parents[2]

SHIPPED = ROOT / "models" / "policy" / "srl-general.onnx"
ELAM_IDS = ["minilm", "smollm2"]
ELAM_FEES = [0.00227, 0.0135]
_INTERFACE = (
    "policy.py",
    "export.py",
    "export_tree.py",
    "features.py",
    "steps.py",
    "runtime.py",
    "tree.py",
)

__all__ = [
    "SHIPPED",
    "DecisionRecorder",
    "Mosquitto",
    "PersistentMosquitto",
    "RappProcess",
    "Recorder",
    "ServiceProcess",
    "XappProcess",
    "copy_policy",
    "e2e_policy",
    "free_port",
    "perturbed_copy",
    "unit_policy",
    "wait_until",
]


def _interface_hash() -> str:
    h = hashlib.sha256()
    for name in _INTERFACE:
        h.update((ROOT / "xapp_composer" / name).read_bytes())
    return h.hexdigest()[:16]


class DecisionRecorder:
    """A test client recording every decision on a network's control topic (QoS 1,
    persistent session: it misses nothing across a broker restart with persistence)."""

    def __init__(self, url: str, network: str = "default", name: str = "decision-recorder"):
        import threading

        from servicekit import codec
        from servicekit.mqtt import MqttClient, Topics

        self.topics = Topics.for_network(network)
        self.lock = threading.Lock()
        self.decisions: list = []
        self.received_ns: list[int] = []
        self.errors: list[str] = []
        self.status: list[bytes] = []
        self.client = MqttClient(url, name, persistent_session=True,
                                 reconnect_min_delay_s=0.2, reconnect_max_delay_s=1.0)  # fmt: skip
        self._active = threading.Event()

        def on_decision(topic: str, payload: bytes) -> None:
            t = time.time_ns()
            try:
                d = codec.decode_decision(payload)
            except codec.DecodeError as exc:
                with self.lock:
                    self.errors.append(str(exc))
                return
            with self.lock:
                self.decisions.append(d)
                self.received_ns.append(t)

        def on_status(topic: str, payload: bytes) -> None:
            with self.lock:
                self.status.append(payload)

        self.client.subscribe(self.topics.control, on_decision, qos=1)
        self.client.subscribe("lameta/v1/status/xapp-composer", on_status, qos=1)
        self.client.subscribe(self.client.status_topic, lambda t, p: self._active.set(), qos=1)

    def start(self) -> DecisionRecorder:
        self.client.start()
        assert self.client.wait_connected(10) and self._active.wait(10), "recorder not ready"
        return self

    def stop(self) -> None:
        self.client.stop(timeout=2.0)

    def by_request(self) -> dict[str, list]:
        out: dict[str, list] = {}
        with self.lock:
            for d in self.decisions:
                out.setdefault(d.request_id, []).append(d)
        return out

    def wait_for(self, request_id: str, timeout: float = 10.0):
        return wait_until(lambda: self.by_request().get(request_id), timeout,
                          f"a decision for {request_id}")[0]  # fmt: skip

    def count(self) -> int:
        with self.lock:
            return len(self.decisions)


class PersistentMosquitto(Mosquitto):
    """Mosquitto that keeps sessions and queued messages across a restart (it saves them
    when stopped with SIGTERM), as a production broker is configured (deploy/mosquitto)."""

    def __init__(self, workdir: Path, port: int | None = None):
        super().__init__(workdir, port)
        store = workdir / f"mosquitto-{self.port}-store"
        store.mkdir(exist_ok=True)
        # Started as root, Mosquitto drops to the "mosquitto" user, which cannot write a
        # store under pytest's private (0700) temporary directory: it would then keep
        # nothing across the restart. Stay root in that case (a test broker only).
        user = ["user root"] if os.geteuid() == 0 else []
        self.conf.write_text(
            loopback_mosquitto_conf(self.port, *user, "persistence true",
                                    f"persistence_location {store}/",
                                    "max_queued_messages 100000")
        )  # fmt: skip


def unit_policy(name: str = "srl-general") -> Path:
    """An exported, untrained policy (deterministic: seed 0, hidden 16), cached."""
    cache = Path(tempfile.gettempdir()) / f"lameta-test-policy-{_interface_hash()}"
    path = cache / f"{name}.onnx"
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (cache / f"{name}.card.json").exists():
            import torch

            from xapp_composer.export import export_onnx, write_card
            from xapp_composer.policy import GCNActorCritic, PolicyConfig

            torch.manual_seed(0)
            policy = GCNActorCritic(PolicyConfig(hidden=16))
            tmp = Path(tempfile.mkdtemp(dir=cache))
            export_onnx(policy, tmp / path.name)
            write_card(
                tmp / path.name,
                policy,
                {"elam_ids": ELAM_IDS, "fees": ELAM_FEES},
                {"untrained_test_policy": 0.0},
            )
            for f in tmp.iterdir():
                f.replace(cache / f.name)
            tmp.rmdir()
    return path


def e2e_policy() -> Path:
    """The shipped policy if there is one, else :func:`unit_policy`."""
    return (
        SHIPPED
        if (SHIPPED.exists() and SHIPPED.with_suffix(".card.json").exists())
        else (unit_policy())
    )


def copy_policy(src: Path, dst_dir: Path, name: str | None = None) -> Path:
    """Copy a policy and its companions (``<stem>.*``) to ``dst_dir``."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    name = name or src.stem
    for f in src.parent.glob(f"{src.stem}.*"):
        if f.suffix in (".png", ".csv"):
            continue
        shutil.copy(f, dst_dir / (name + f.name[len(src.stem) :]))
    card = dst_dir / f"{name}.card.json"
    data = json.loads(card.read_text())
    data["name"] = name
    for key in ("file",):
        data[key] = f"{name}.onnx"
    card.write_text(json.dumps(data, indent=2))
    return dst_dir / f"{name}.onnx"


def perturbed_copy(src: Path, dst_dir: Path, scale: float = 1.5) -> Path:
    """A different, valid policy: ``src`` with the step heads' weights scaled, its card's
    sha256 updated (what a retrained and re-exported policy looks like to the xApp)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from xapp_composer.export import sha256_file

    out = copy_policy(src, dst_dir, src.stem)
    model = onnx.load(str(out))
    changed = 0
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.ndim == 2:
            init.CopyFrom(numpy_helper.from_array(arr * np.float32(scale), init.name))
            changed += 1
    assert changed, "no weight matrix to perturb"
    tmp = out.with_suffix(".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(out)
    card = out.with_suffix(".card.json")
    data = json.loads(card.read_text())
    data["sha256"] = sha256_file(out)
    card.write_text(json.dumps(data, indent=2))
    return out


# --------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------
class RappProcess(ManagedProcess):
    """``rapp-intent serve --models minilm`` on a fixed port, memory in ``workdir``."""

    def __init__(self, workdir: Path, port: int | None = None, models: str = "minilm"):
        self.port = port or free_port()
        self.memory = workdir / "rapp-memory.sqlite3"
        super().__init__(
            "rapp-intent",
            ["serve", "--models", models, "--port", str(self.port)],
            workdir,
            env={
                "RAPP_MEMORY_PATH": str(self.memory),
                "RAPP_METRICS_PORT": "0",
                "RAPP_LOG_FORMAT": "json",
                "RAPP_CACHE_DIR": str(workdir / "rapp-cache"),
                "RAPP_REPORT_IDENTITIES": "*",  # plaintext in tests: any caller may write
            },
        )

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_serving(self, timeout: float = 120.0) -> RappProcess:
        def serving() -> bool:
            assert self.alive(), f"rapp-intent exited:\n{self.logs()[-3000:]}"
            return grpc_serving(self.target)

        wait_until(serving, timeout, "rapp-intent health SERVING", step=0.2)
        return self

    def memory_request_ids(self) -> list[str]:
        """Request ids of the records in the rApp's in-context memory (its SQLite file)."""
        import sqlite3

        if not self.memory.exists():
            return []
        with contextlib.closing(sqlite3.connect(self.memory, timeout=5.0)) as db:
            try:
                return [r[0] for r in db.execute("select request_id from records order by id")]
            except sqlite3.OperationalError:  # not created yet
                return []


class XappProcess(ManagedProcess):
    """``xapp-composer run`` with its health server on a free port."""

    def __init__(
        self,
        workdir: Path,
        broker: str,
        rapp: str,
        policy: Path,
        *extra: str,
        env: dict[str, str] | None = None,
    ):
        self.health_port = free_port()
        super().__init__(
            "xapp-composer",
            ["run", "--broker", broker, "--rapp", rapp, "--policy", str(policy),
             "--health-host", "127.0.0.1", "--health-port", str(self.health_port), *extra],
            workdir,
            env={"XAPP_LOG_FORMAT": "json", "XAPP_RECONNECT_MIN_DELAY": "0.2",
                 "XAPP_RECONNECT_MAX_DELAY": "1.0", "XAPP_RAPP_HEALTH_PERIOD": "0.5",
                 **(env or {})},
        )  # fmt: skip

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.health_port}{path}", timeout=2.0)

    def ready(self) -> dict:
        """The readiness answer (JSON), or {} when the server does not answer yet."""
        assert self.alive(), f"xapp-composer exited:\n{self.logs()[-3000:]}"
        try:
            return self.get("/ric/v1/health/ready").json()
        except httpx.HTTPError:
            return {}

    def wait_ready(self, timeout: float = 60.0) -> XappProcess:
        wait_until(lambda: self.ready().get("ready"), timeout, "xapp ready", step=0.1)
        return self

    def metric(self, name: str, **labels: str) -> float:
        """One sample of ``/metrics`` (0 when absent)."""
        return metric_sum(self.get("/metrics").text, name, **labels)


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of the samples ``name`` with ``labels`` in a Prometheus exposition (0 when
    absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total
