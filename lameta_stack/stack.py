"""A local stack that runs as deployed: a TLS-only broker with one user per component and
their ACL, the intent rApp behind mutual TLS, the xApp with a signed policy, and the
emulator, each a background process with its own identity.

The stack directory holds everything it makes, on first start, and reuses it later:

=====================  =============================================================
``pki/``               a private CA, the broker's and the rApp's server certificates,
                       client certificates (xapp-composer, operator)
``secrets/``           one broker password per user (mode 0600)
``keys/``              the Ed25519 key pair that signs the policy
``policy/``            the shipped policy, copied and signed (``<name>.signature.json``)
``broker/``            the broker's configuration, password and ACL files
``state/``             the rApp's in-context memory
``logs/``              one log per component
``stack.json``         where everything is (written by ``up``, removed by ``down``)
=====================  =============================================================
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lameta_stack import broker as B
from lameta_stack.pki import CertificateAuthority
from lameta_stack.processes import ROOT, ProcessRecord, command_for, spawn
from servicekit.acl import USERS
from servicekit.integrity import (
    artefact_files,
    generate_keypair,
    key_id,
    load_private_key,
    load_public_key,
    sign_artefact,
)
from servicekit.mqtt import BrokerUrl, MqttClient, TlsOptions, status_topic

SHIPPED_POLICY = ROOT / "models" / "policy" / "srl-general.onnx"

COMPONENTS = ("broker", "rapp", "xapp", "sim", "nego", "guard")
"""What ``up`` starts, in order (``down`` stops them in reverse); ``nego``, the
negotiation rApp, only with :attr:`StackConfig.negotiation`; ``guard``, the intrusion
detector, only with :attr:`StackConfig.guard`."""


class StackError(RuntimeError):
    """A component could not be started or a stack file is missing or damaged."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free a moment ago."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def _tail(path: str | Path, lines: int = 15) -> str:
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def wait_for(
    pred: Callable[[], object], timeout: float, what: str, proc: ProcessRecord | None = None
) -> None:
    """Poll ``pred`` until true; fail early when ``proc`` exits.

    Raises:
        StackError: timed out, or the process died (with its log's tail).
    """
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if pred():
                return
        if proc is not None and not proc.alive():
            raise StackError(f"{proc.name} exited while starting; {proc.log}:\n{_tail(proc.log)}")
        if time.monotonic() > deadline:
            where = f"; {proc.log}:\n{_tail(proc.log)}" if proc is not None else ""
            raise StackError(f"timed out after {timeout:g} s waiting for {what}{where}")
        time.sleep(0.1)


def grpc_serving(target: str, credentials=None) -> bool:
    """The gRPC server at ``target`` answers its overall health with SERVING (plaintext
    without ``credentials``)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    channel = (
        grpc.secure_channel(target, credentials)
        if credentials is not None
        else grpc.insecure_channel(target)
    )
    with channel as ch:
        try:
            resp = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=1.0
            )
        except grpc.RpcError:
            return False
    return resp.status == health_pb2.HealthCheckResponse.SERVING


@dataclass
class StackConfig:
    """What ``lameta-stack up`` runs."""

    directory: Path
    broker: Literal["auto", "mosquitto", "embedded"] = "auto"
    network: str = "default"
    rate: float = 1.0
    requests: int | None = None
    seed: int = 0
    rapp_models: str = "minilm"
    policy: Path = SHIPPED_POLICY
    host: str = "127.0.0.1"
    negotiation: bool = False
    """Also run the negotiation rApp (user ``rapp-negotiation``), which publishes λ*."""
    guard: bool = False
    """Also run the intrusion detector (user ``xapp-guard``), which reads the broker's
    log (Mosquitto then logs every packet) and the rApp's access log, and publishes
    alerts."""
    env: dict[str, dict[str, str]] = field(default_factory=dict)
    """Extra environment per component (``{"xapp": {"XAPP_DECIDERS": "2"}}``,
    ``{"nego": {"NEGO_LLM": "scripted"}}``, ``{"guard": {"GUARD_THRESHOLD": "0.5"}}``)."""
    xapp_replicas: int = 1
    """xApps sharing the network's requests (MQTT shared subscription; Mosquitto only):
    ``xapp``, ``xapp-2``, ...; the emulator re-announces what stays unsettled
    ``reannounce_after`` seconds."""
    reannounce_after: float = 3.0


class Stack:
    """The stack in one directory: :meth:`up`, :meth:`down`, :meth:`status`."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory).resolve()
        self.pki_dir = self.dir / "pki"
        self.secrets_dir = self.dir / "secrets"
        self.keys_dir = self.dir / "keys"
        self.policy_dir = self.dir / "policy"
        self.logs_dir = self.dir / "logs"
        self.state_dir = self.dir / "state"
        self.file = self.dir / "stack.json"

    # ---- identities ---------------------------------------------------------------------
    def password(self, user: str) -> str:
        """The broker password of ``user`` (made once, kept in ``secrets/``)."""
        path = self.password_file(user)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(24) + "\n")
            path.chmod(0o600)
        return path.read_text().strip()

    def password_file(self, user: str) -> Path:
        return self.secrets_dir / f"{user}.password"

    def certificates(self, host: str) -> dict[str, dict[str, str]]:
        """The CA and every certificate the stack uses (made on first start)."""
        ca = CertificateAuthority(self.pki_dir)
        names = (host, "localhost", "127.0.0.1")
        made = {
            "broker": ca.issue("broker", server_names=names),
            "rapp": ca.issue("rapp-intent", server_names=names),
            "xapp": ca.issue("xapp-composer", client=True),
            "operator": ca.issue("operator", client=True),
        }
        out = {k: {"cert": str(v.cert), "key": str(v.key)} for k, v in made.items()}
        out["ca"] = {"cert": str(ca.cert_path)}
        return out

    def signed_policy(self, policy: Path) -> tuple[Path, Path, str]:
        """The policy copied into ``policy/`` and signed with the stack's key.

        Returns:
            (the copy's path, the public key, the key id).
        """
        private, public = self.keys_dir / "policy.pem", self.keys_dir / "policy.pub"
        if not private.exists():
            generate_keypair(private, public)
        policy = Path(policy)
        files = artefact_files(policy)
        if not any(p.name == policy.name for p in files):
            raise StackError(f"policy {policy} not found")
        self.policy_dir.mkdir(parents=True, exist_ok=True)
        for old in self.policy_dir.glob(f"{policy.stem}.*"):
            old.unlink()
        for p in files:
            shutil.copy2(p, self.policy_dir / p.name)
        copy = self.policy_dir / policy.name
        sign_artefact(copy, load_private_key(private))
        return copy, public, key_id(load_public_key(public))

    # ---- up -----------------------------------------------------------------------------
    def up(
        self,
        config: StackConfig,
        progress: Callable[[str], None] = lambda _: None,
        on_broker: Callable[[dict], None] | None = None,
    ) -> dict:
        """Start every component and return once each reports ready.

        Args:
            config: what to run.
            progress: told the name of each stage as it starts.
            on_broker: called once the broker accepts logins, before any component
                publishes (an observer that must see everything subscribes here).

        Returns:
            The stack description written to ``stack.json``.

        Raises:
            StackError: a component failed to start (everything started is stopped).
        """
        if self.file.exists() and any(p.alive() for p in self.records()):
            raise StackError(f"a stack is already running in {self.dir} (lameta-stack down)")
        self.dir.mkdir(parents=True, exist_ok=True)
        started: list[ProcessRecord] = []
        try:
            desc = self._up(config, started, progress, on_broker)
        except BaseException:
            for rec in reversed(started):
                rec.stop(grace=10)
            raise
        return desc

    def _up(self, cfg: StackConfig, started: list[ProcessRecord], progress, on_broker) -> dict:
        host = cfg.host
        progress("certificates and keys")
        certs = self.certificates(host)
        passwords = {u: self.password(u) for u in USERS}
        policy, public_key, kid = self.signed_policy(cfg.policy)
        ca = certs["ca"]["cert"]
        desc: dict = {
            "network": cfg.network,
            "directory": str(self.dir),
            "components": {},
        }

        def record(rec: ProcessRecord, env: Mapping[str, str]) -> ProcessRecord:
            started.append(rec)
            desc["components"][rec.name] = rec.to_json()
            self._write_env(rec.name, env)
            self._write(desc)
            return rec

        # ---- broker
        kind = cfg.broker
        if kind == "auto":
            kind = "mosquitto" if B.mosquitto_available() else "embedded"
        if kind == "mosquitto" and not B.mosquitto_available():
            raise StackError(f"mosquitto not found at {B.MOSQUITTO} (use --broker embedded)")
        if cfg.guard and kind != "mosquitto":
            # The guard learns who published what from the broker's log; amqtt logs no
            # publisher.
            raise StackError("the guard needs Mosquitto (its log names each publisher)")
        progress(f"broker ({kind}, TLS)")
        plan = B.BrokerPlan(
            kind,
            host,
            free_port(host),
            ca,
            certs["broker"]["cert"],
            certs["broker"]["key"],
            passwords,
        )
        broker_log = self.logs_dir / "broker.log"
        if kind == "mosquitto":
            conf = B.write_mosquitto_config(
                plan, self.dir / "broker", broker_log, log_all=cfg.guard
            )
            argv = [B.MOSQUITTO, "-c", str(conf)]
        else:
            conf = B.write_embedded_config(plan, self.dir / "broker")
            argv = [sys.executable, "-m", "lameta_stack.broker", str(conf)]
        rec = record(spawn("broker", argv, broker_log, {}), {})
        desc["broker"] = {
            "kind": kind,
            "host": host,
            "port": plan.port,
            "ca_file": ca,
            "message_size_limit": plan.message_size_limit,
        }
        tls = TlsOptions(ca_certs=ca)
        wait_for(
            lambda: _port_open(host, plan.port) and self._mqtt_login(plan, "observer", tls),
            20,
            "the broker (TLS)",
            rec,
        )
        if on_broker is not None:
            on_broker(dict(desc))

        def url(user: str) -> str:
            return str(BrokerUrl("mqtts", host, plan.port, user, passwords[user]))

        desc["observer"] = {
            "username": "observer",
            "password_file": str(self.password_file("observer")),
        }
        desc["operator"] = {
            "username": "operator",
            "password_file": str(self.password_file("operator")),
            "client_cert": certs["operator"]["cert"],
            "client_key": certs["operator"]["key"],
        }

        # ---- rApp (mutual TLS)
        progress("intent rApp (loading E-LAMs)")
        rapp_port, rapp_metrics = free_port(host), free_port(host)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        rapp_access_log = self.logs_dir / "rapp-access.jsonl"
        rapp_env = {
            "RAPP_HOST": host,
            "RAPP_PORT": str(rapp_port),
            "RAPP_METRICS_HOST": host,
            "RAPP_METRICS_PORT": str(rapp_metrics),
            "RAPP_MODELS": cfg.rapp_models,
            "RAPP_TLS_CERT": certs["rapp"]["cert"],
            "RAPP_TLS_KEY": certs["rapp"]["key"],
            "RAPP_TLS_CLIENT_CA": ca,
            "RAPP_REPORT_IDENTITIES": "xapp-composer",
            "RAPP_MEMORY_PATH": str(self.state_dir / "rapp-memory.sqlite3"),
            "RAPP_LOG_FORMAT": "json",
            **({"RAPP_ACCESS_LOG": str(rapp_access_log)} if cfg.guard else {}),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            **cfg.env.get("rapp", {}),
        }
        rec = record(
            spawn(
                "rapp", [*command_for("rapp-intent"), "serve"], self.logs_dir / "rapp.log", rapp_env
            ),
            rapp_env,
        )
        address = f"{host}:{rapp_port}"
        desc["rapp"] = {
            "address": address,
            "ca_file": ca,
            "metrics": f"http://{host}:{rapp_metrics}/metrics",
        }
        wait_for(
            lambda: self._rapp_serving(address, ca, certs["operator"]),
            300,
            "the rApp's health SERVING (mTLS)",
            rec,
        )

        # ---- xApp (signed policy), one or several replicas
        replicas = cfg.xapp_replicas
        progress("xApp (signed policy)" if replicas == 1 else f"{replicas} xApp replicas")
        shared = replicas > 1
        if shared and kind != "mosquitto":
            raise StackError("xApp replicas need Mosquitto (shared subscriptions)")

        def start_xapp(i: int) -> None:
            name = "xapp" if i == 1 else f"xapp-{i}"
            health = free_port(host)
            xapp_env = {
                "XAPP_BROKER": url("xapp-composer"),
                "XAPP_TLS_CA": ca,
                "XAPP_NETWORK": cfg.network,
                "XAPP_RAPP": address,
                "XAPP_RAPP_TLS_CA": ca,
                "XAPP_RAPP_TLS_CERT": certs["xapp"]["cert"],
                "XAPP_RAPP_TLS_KEY": certs["xapp"]["key"],
                "XAPP_POLICY": str(policy),
                "XAPP_POLICY_PUBLIC_KEY": str(public_key),
                "XAPP_HEALTH_HOST": host,
                "XAPP_HEALTH_PORT": str(health),
                "XAPP_LOG_FORMAT": "json",
                **(
                    {
                        "XAPP_SHARE_GROUP": "xapp-composer",
                        "XAPP_MQTT_CLIENT_ID": f"xapp-composer-{cfg.network}-{i}",
                        "XAPP_MQTT_PERSISTENT_SESSION": "false",
                    }
                    if shared
                    else {}
                ),
                **cfg.env.get("xapp", {}),
            }
            rec = record(
                spawn(
                    name,
                    [*command_for("xapp-composer"), "run"],
                    self.logs_dir / f"{name}.log",
                    xapp_env,
                ),
                xapp_env,
            )
            desc[name] = {
                "health": f"http://{host}:{health}",
                "policy": str(policy),
                "policy_key_id": kid,
            }
            wait_for(
                lambda: self._http_ok(f"http://{host}:{health}/ric/v1/health/ready"),
                120,
                f"the readiness of {name}",
                rec,
            )

        for i in range(1, replicas + 1):
            start_xapp(i)
        sim_extra = {"SIM_REANNOUNCE_AFTER": str(cfg.reannounce_after)} if shared else {}

        # ---- emulator
        progress("emulator")
        sim_metrics = free_port(host)
        sim_env = {
            "SIM_BROKER": url("sim-ric"),
            "SIM_TLS_CA": ca,
            "SIM_NETWORK": cfg.network,
            "SIM_RATE": str(cfg.rate),
            "SIM_SEED": str(cfg.seed),
            "SIM_METRICS_HOST": host,
            "SIM_METRICS_PORT": str(sim_metrics),
            "SIM_LOG_FORMAT": "json",
            **({"SIM_REQUESTS": str(cfg.requests)} if cfg.requests is not None else {}),
            **sim_extra,
            **cfg.env.get("sim", {}),
        }
        rec = record(
            spawn("sim", [*command_for("sim-ric"), "run"], self.logs_dir / "sim.log", sim_env),
            sim_env,
        )
        desc["sim"] = {"metrics": f"http://{host}:{sim_metrics}/metrics"}
        wait_for(
            lambda: self._status_online(plan, tls, "sim-ric"),
            60,
            "the emulator's status 'online'",
            rec,
        )

        def start_service(name: str, user: str, prefix: str, env: dict[str, str]) -> ProcessRecord:
            """``<user> run`` logged in as broker user ``user`` over TLS (the console
            script is named after its user), its environment under ``prefix``."""
            full = {
                f"{prefix}_BROKER": url(user),
                f"{prefix}_TLS_CA": ca,
                f"{prefix}_NETWORK": cfg.network,
                f"{prefix}_LOG_FORMAT": "json",
                **env,
                **cfg.env.get(name, {}),
            }
            argv = [*command_for(user), "run"]
            return record(spawn(name, argv, self.logs_dir / f"{name}.log", full), full)

        # ---- negotiation rApp (ready once it has observed a state)
        if cfg.negotiation:
            progress("negotiation rApp")
            nego_health = free_port(host)
            rec = start_service(
                "nego",
                "rapp-negotiation",
                "NEGO",
                {
                    "NEGO_HEALTH_HOST": host,
                    "NEGO_HEALTH_PORT": str(nego_health),
                    "HF_HUB_OFFLINE": "1",
                    "TRANSFORMERS_OFFLINE": "1",
                },
            )
            desc["nego"] = {"health": f"http://{host}:{nego_health}"}
            wait_for(
                lambda: self._http_ok(f"http://{host}:{nego_health}/ric/v1/health/ready"),
                300,
                "the negotiation rApp's readiness",
                rec,
            )

        # ---- intrusion detector (ready once its metrics answer and it is online)
        if cfg.guard:
            progress("intrusion detector")
            guard_metrics = free_port(host)
            rec = start_service(
                "guard",
                "xapp-guard",
                "GUARD",
                {
                    "GUARD_BROKER_LOG": str(broker_log),
                    "GUARD_ACCESS_LOG": str(rapp_access_log),
                    "GUARD_METRICS_HOST": host,
                    "GUARD_METRICS_PORT": str(guard_metrics),
                },
            )
            desc["guard"] = {
                "metrics": f"http://{host}:{guard_metrics}/metrics",
                "alerts_topic": f"lameta/v1/{cfg.network}/alerts",
            }
            wait_for(
                lambda: (
                    self._http_ok(desc["guard"]["metrics"])
                    and self._status_online(plan, tls, "xapp-guard")
                ),
                60,
                "the guard's metrics and status 'online'",
                rec,
            )
        desc["ready"] = True
        self._write(desc)
        return desc

    # ---- probes -------------------------------------------------------------------------
    def _mqtt_login(self, plan: B.BrokerPlan, user: str, tls: TlsOptions) -> bool:
        url = BrokerUrl("mqtts", plan.host, plan.port, user, plan.passwords[user])
        client = MqttClient(url, user, tls=tls, reconnect_max_delay_s=1.0)
        client.start()
        try:
            return client.wait_connected(2.0)
        finally:
            client.stop(timeout=1.0)

    def _status_online(self, plan: B.BrokerPlan, tls: TlsOptions, component: str) -> bool:
        got = threading.Event()
        url = BrokerUrl("mqtts", plan.host, plan.port, "observer", plan.passwords["observer"])
        client = MqttClient(url, "observer", tls=tls)
        client.subscribe(
            status_topic(component), lambda t, p: got.set() if p == b"online" else None
        )
        client.start()
        try:
            return got.wait(2.0)
        finally:
            client.stop(timeout=1.0)

    @staticmethod
    def _rapp_serving(address: str, ca: str, client: Mapping[str, str]) -> bool:
        import grpc

        creds = grpc.ssl_channel_credentials(
            root_certificates=Path(ca).read_bytes(),
            private_key=Path(client["key"]).read_bytes(),
            certificate_chain=Path(client["cert"]).read_bytes(),
        )
        return grpc_serving(address, creds)

    @staticmethod
    def _http_ok(url: str) -> bool:
        import httpx

        try:
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    # ---- bookkeeping --------------------------------------------------------------------
    def _write(self, desc: dict) -> None:
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(desc, indent=2) + "\n")
        tmp.chmod(0o600)
        tmp.replace(self.file)

    def _write_env(self, name: str, env: Mapping[str, str]) -> None:
        path = self.dir / "run" / f"{name}.env.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dict(env)))
        path.chmod(0o600)

    def record(self, name: str) -> ProcessRecord:
        """The process record of a component.

        Raises:
            StackError: no such component in this stack.
        """
        comps = self.describe().get("components", {})
        if name not in comps:
            raise StackError(f"no component {name!r} in {self.dir} (have {sorted(comps)})")
        return ProcessRecord.from_json(comps[name])

    def kill(self, name: str) -> None:
        """SIGKILL a component, like a crash (its record stays for :meth:`restart`)."""
        rec = self.record(name)
        rec.signal(9)
        wait_for(lambda: not rec.alive(), 10, f"{name} to die")

    def restart(self, name: str) -> ProcessRecord:
        """Start a component again with its argv and environment (after :meth:`kill`).

        Returns:
            The new process record (also written to ``stack.json``).
        """
        old = self.record(name)
        if old.alive():
            raise StackError(f"{name} is still running (pid {old.pid})")
        env = json.loads((self.dir / "run" / f"{name}.env.json").read_text())
        rec = spawn(name, old.argv, Path(old.log), env)
        desc = self.describe()
        desc["components"][name] = rec.to_json()
        self._write(desc)
        return rec

    def describe(self) -> dict:
        """``stack.json``.

        Raises:
            StackError: no stack was started in this directory.
        """
        try:
            return json.loads(self.file.read_text())
        except FileNotFoundError:
            raise StackError(f"no stack in {self.dir} (lameta-stack up --dir {self.dir})") from None
        except ValueError as exc:
            raise StackError(f"{self.file} is damaged: {exc}") from None

    def records(self) -> list[ProcessRecord]:
        """The processes ``up`` started, in start order."""
        try:
            comps = self.describe().get("components", {})
        except StackError:
            return []
        return [ProcessRecord.from_json(v) for v in comps.values()]

    def status(self) -> dict[str, bool]:
        """Component -> still running."""
        return {r.name: r.alive() for r in self.records()}

    def down(self, grace: float = 30.0) -> dict[str, bool]:
        """Stop every component (newest first) and remove ``stack.json``.

        Returns:
            Component -> stopped (True: nothing of it is left).

        Raises:
            StackError: no stack was started in this directory.
        """
        self.describe()
        out = {}
        for rec in reversed(self.records()):
            out[rec.name] = rec.stop(grace=grace)
        if all(out.values()):
            self.file.unlink(missing_ok=True)
        return out
