"""An embedded MQTT broker for demos and tests: amqtt, in-process, on loopback.

``sim-ric run --broker embedded`` starts one; a demo launcher or a test can start one
with :class:`EmbeddedBroker` (a context manager) and hand :attr:`EmbeddedBroker.url`
(credentials included) to the other components.

Anonymous access is disabled (amqtt's default allows it): clients authenticate with a
user name and password checked by amqtt's password-file plugin (argon2 hashes in a
private temporary file). Without a configured password one is generated at start.

The broker runs its asyncio loop on a daemon thread, so the caller's thread stays free
(paho-mqtt clients are thread-based).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import tempfile
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

from servicekit.mqtt import BrokerUrl

log = structlog.get_logger("servicekit.broker")

# amqtt 0.12 names its subscribe ACL ``acl`` in the dataclass configuration and warns that
# the name is deprecated in the same breath; the warning says nothing to our users.
warnings.filterwarnings(
    "ignore", message="The 'acl' option is deprecated", category=DeprecationWarning
)


class EmbeddedBrokerError(RuntimeError):
    """The embedded broker could not start or stop."""


def _hash_password(password: str) -> str:
    from pwdlib import PasswordHash
    from pwdlib.hashers.argon2 import Argon2Hasher

    return PasswordHash((Argon2Hasher(),)).hash(password)


class EmbeddedBroker:
    """An amqtt broker on a daemon thread, with password authentication only.

    Args:
        host: bind address (default loopback).
        port: TCP port; 0 picks a free one (see :attr:`port` once started).
        username: the user the services connect as.
        password: its password; generated when None (see :attr:`password`).
        extra_users: more ``user -> password`` pairs (e.g. one per component).
        acl: amqtt's topic ACL (``{"publish-acl": {user: [filters]}, "subscribe-acl":
            {...}}``, see :func:`servicekit.acl.amqtt_acl`); a user missing from a list
            may do nothing of that kind. None: every user may publish and subscribe
            anything.
        tls: (certificate chain, private key) PEM files: the listener speaks TLS only
            (``mqtts://``); clients check it against the CA that signed it.
        start_timeout: seconds to wait for the broker to listen.

    Example::

        with EmbeddedBroker() as broker:
            client = MqttClient(broker.url, "sim-ric")
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        username: str = "sim-ric",
        password: str | None = None,
        extra_users: Mapping[str, str] | None = None,
        acl: Mapping[str, Mapping[str, list[str]]] | None = None,
        tls: tuple[str | Path, str | Path] | None = None,
        start_timeout: float = 15.0,
    ):
        if not username or ":" in username:
            raise ValueError(f"embedded broker user name {username!r} must be non-empty, no ':'")
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} out of range")
        self.host = host
        self.requested_port = port
        self.username = username
        self.password = password if password else secrets.token_urlsafe(18)
        self.users = {username: self.password, **dict(extra_users or {})}
        for user in self.users:
            if not user or ":" in user:
                raise ValueError(f"embedded broker user name {user!r} must be non-empty, no ':'")
        self.acl = None if acl is None else {k: dict(v) for k, v in acl.items()}
        self.tls = None if tls is None else (str(tls[0]), str(tls[1]))
        self.start_timeout = start_timeout
        self.port = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: Any = None
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None

    # ---- addresses ------------------------------------------------------------------
    @property
    def broker_url(self) -> BrokerUrl:
        """The broker's address with the service user's credentials."""
        if not self.port:
            raise EmbeddedBrokerError("the embedded broker is not running")
        return BrokerUrl(self.scheme, self.host, self.port, self.username, self.password)

    @property
    def scheme(self) -> str:
        """``mqtts`` with TLS, else ``mqtt``."""
        return "mqtts" if self.tls else "mqtt"

    @property
    def url(self) -> str:
        """``mqtt://user:password@host:port`` (hand it to trusted components only)."""
        return str(self.broker_url)

    def url_for(self, user: str) -> str:
        """The URL with the credentials of another configured user."""
        return str(BrokerUrl(self.scheme, self.host, self.port, user, self.users[user]))

    @property
    def running(self) -> bool:
        """True between a successful :meth:`start` and :meth:`stop`."""
        return self._thread is not None and self._thread.is_alive() and self._ready.is_set()

    # ---- life cycle -----------------------------------------------------------------
    def _config(self, password_file: Path) -> dict[str, Any]:
        listener: dict[str, Any] = {"type": "tcp", "bind": f"{self.host}:{self.requested_port}"}
        if self.tls:
            listener.update(ssl=True, certfile=self.tls[0], keyfile=self.tls[1])
        plugins: dict[str, Any] = {
            # Both must pass: a session without a user name is refused by the first,
            # a wrong password by the second.
            "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": False},
            "amqtt.plugins.authentication.FileAuthPlugin": {"password_file": str(password_file)},
        }
        if self.acl is not None:
            # amqtt 0.12's dataclass config: ``acl`` holds the subscribe ACL.
            plugins["amqtt.plugins.topic_checking.TopicAccessControlListPlugin"] = {
                "publish_acl": self.acl.get("publish-acl", {}),
                "acl": self.acl.get("subscribe-acl", {}),
            }
        return {"listeners": {"default": listener}, "plugins": plugins}

    def start(self) -> EmbeddedBroker:
        """Start the broker and wait until it listens.

        Raises:
            EmbeddedBrokerError: it did not start (the cause is chained).
        """
        if self._thread is not None:
            raise EmbeddedBrokerError("the embedded broker is already started")
        self._tmpdir = tempfile.TemporaryDirectory(prefix="sim-ric-broker-")
        pwfile = Path(self._tmpdir.name) / "passwd"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for user, password in self.users.items():
                fh.write(f"{user}:{_hash_password(password)}\n")
        config = self._config(pwfile)
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(
            target=self._thread_main, args=(config,), name="embedded-mqtt-broker", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(self.start_timeout) or self._error is not None:
            err = self._error
            self.stop()
            raise EmbeddedBrokerError(
                f"embedded broker on {self.host}:{self.requested_port} did not start: "
                f"{err or 'timed out'}"
            ) from err
        log.info(
            "embedded_broker_started",
            url=self.broker_url.redacted(),
            users=sorted(self.users),
            anonymous=False,
            acl=self.acl is not None,
            tls=bool(self.tls),
        )
        return self

    def _thread_main(self, config: dict[str, Any]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(config))
        except BaseException as exc:  # reported to start() or logged at stop
            self._error = exc
            self._ready.set()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self, config: dict[str, Any]) -> None:
        from amqtt.broker import Broker

        self._stopped = asyncio.Event()
        broker = Broker(config)
        await broker.start()
        self._broker = broker
        try:
            # amqtt keeps its servers per listener; read the port the OS picked.
            server = broker._servers["default"].instance
            self.port = int(server.sockets[0].getsockname()[1])
        except (AttributeError, KeyError, IndexError) as exc:
            await broker.shutdown()
            raise EmbeddedBrokerError(f"cannot read the embedded broker's port: {exc}") from exc
        self._ready.set()
        await self._stopped.wait()
        await broker.shutdown()

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the broker down (idempotent)."""
        thread, loop, stopped = self._thread, self._loop, self._stopped
        if thread is not None and loop is not None and stopped is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopped.set)
            thread.join(timeout)
            if thread.is_alive():
                log.warning("embedded_broker_stop_timeout", timeout=timeout)
        if self._error is not None and self._ready.is_set() and self.port:
            log.warning("embedded_broker_error", error=repr(self._error))
        was_running = bool(self.port)
        self._thread = None
        self._loop = None
        self._stopped = None
        self._broker = None
        self.port = 0
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None
        if was_running:
            log.info("embedded_broker_stopped")

    def write_url_file(self, path: str | Path) -> Path:
        """Write :attr:`url` to ``path`` with mode 0600 (for other local components)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(self.url + "\n")
        os.replace(tmp, path)
        return path

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def quiet_amqtt_logs(level: int = logging.WARNING) -> None:
    """amqtt logs every connection at INFO through stdlib logging; raise its threshold."""
    logging.getLogger("amqtt").setLevel(level)
    logging.getLogger("transitions").setLevel(level)
