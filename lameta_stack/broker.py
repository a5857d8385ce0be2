"""The stack's MQTT broker with the deployment's identities: TLS only, one user per
component, the ACL of :mod:`servicekit.acl`.

Two kinds, the same users, ACL and TLS either way:

- ``mosquitto`` (where installed): a configuration rendered into the stack directory,
  passwords hashed as ``mosquitto_passwd`` does, ``message_size_limit`` set;
- ``embedded`` (amqtt, pure Python; no system package needed): run as its own process by
  ``python -m lameta_stack.broker CONFIG``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import shutil
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from servicekit.acl import USERS, amqtt_acl, mosquitto_acl, mosquitto_password_hash
from servicekit.broker import EmbeddedBroker, EmbeddedBrokerError, quiet_amqtt_logs
from servicekit.logs import configure_logging
from servicekit.signals import stop_on_signals

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"

MESSAGE_SIZE_LIMIT = 4 * 1024 * 1024
"""Largest payload the broker forwards (bytes); larger ones are dropped by the broker.
A state message of 10,000 agents is about 1 MiB."""


@dataclass(frozen=True)
class BrokerPlan:
    """Where the broker listens and the files it reads."""

    kind: str
    host: str
    port: int
    ca_file: str
    cert_file: str
    key_file: str
    passwords: dict[str, str]
    message_size_limit: int = MESSAGE_SIZE_LIMIT


def mosquitto_available() -> bool:
    """True when a Mosquitto binary is installed."""
    return Path(MOSQUITTO).exists()


GUARD_LOG_LINES = ("log_type all", "log_timestamp true")
"""What the guard's sensor reads in the broker's log: every packet, with its client."""


def write_mosquitto_config(
    plan: BrokerPlan, directory: Path, log_file: Path, *, log_all: bool = False
) -> Path:
    """``mosquitto.conf``, ``passwd`` and ``acl`` in ``directory`` (private files 0600).

    Args:
        plan: where the broker listens and the files it reads.
        directory: where the files go.
        log_file: the broker's log.
        log_all: log every packet with its client (what ``xapp-guard`` reads).
    """
    directory.mkdir(parents=True, exist_ok=True)
    passwd = directory / "passwd"
    acl = directory / "acl"
    for path, text in (
        (passwd, "".join(f"{u}:{mosquitto_password_hash(p)}\n" for u, p in plan.passwords.items())),
        (acl, mosquitto_acl()),
    ):
        path.write_text(text)
        path.chmod(0o600)
    conf = directory / "mosquitto.conf"
    lines = [
        "# Rendered by lameta-stack; one user per component, TLS only.",
        "per_listener_settings false",
        # Mosquitto started as root switches to its own user and could not read the
        # private files; it keeps the user that starts it instead.
        f"user {getpass.getuser()}",
        f"listener {plan.port} {plan.host}",
        "protocol mqtt",
        f"cafile {plan.ca_file}",
        f"certfile {plan.cert_file}",
        f"keyfile {plan.key_file}",
        "tls_version tlsv1.2",
        "require_certificate false",
        "allow_anonymous false",
        f"password_file {passwd}",
        f"acl_file {acl}",
        "persistence false",
        f"message_size_limit {plan.message_size_limit}",
        "max_queued_messages 100000",
        "max_inflight_messages 100",
        # Nagle's algorithm would hold a PUBACK written just before a forwarded PUBLISH
        # until the peer's delayed ACK (up to 40 ms per hop).
        "set_tcp_nodelay true",
        f"log_dest file {log_file}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages true",
        *(GUARD_LOG_LINES if log_all else ()),
    ]
    conf.write_text("\n".join(lines) + "\n")
    return conf


def write_embedded_config(plan: BrokerPlan, directory: Path) -> Path:
    """The embedded broker's configuration (JSON, 0600: it holds the passwords)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "embedded.json"
    path.write_text(json.dumps(asdict(plan), indent=2))
    path.chmod(0o600)
    return path


def run_embedded(config: Path) -> int:
    """Serve the embedded broker of ``config`` until SIGTERM or SIGINT."""
    plan = BrokerPlan(**json.loads(Path(config).read_text()))
    configure_logging("INFO", "json")
    quiet_amqtt_logs()
    users = dict(plan.passwords)
    first = USERS[0]
    broker = EmbeddedBroker(
        host=plan.host,
        port=plan.port,
        username=first,
        password=users.pop(first),
        extra_users=users,
        acl=amqtt_acl(),
        tls=(plan.cert_file, plan.key_file),
    )
    stop = threading.Event()
    with stop_on_signals(stop):
        try:
            broker.start()
        except EmbeddedBrokerError as exc:
            print(f"lameta-stack broker: {exc}", file=sys.stderr)
            return 1
        try:
            stop.wait()
        finally:
            broker.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lameta_stack.broker")
    parser.add_argument("config", type=Path, help="embedded.json written by lameta-stack")
    return run_embedded(parser.parse_args(argv).config)


if __name__ == "__main__":
    sys.exit(main())
