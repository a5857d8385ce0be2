"""Broker identities: one user per component and the topics each may publish and read.

ARCHITECTURE.md "Trust": every component has its own broker user with an ACL that lets it
publish only its own topics (the emulator: state, requests, outcomes; the xApp: control;
the negotiation rApp: policy; the guard: alerts), and a message on a topic its sender
may not publish never reaches a subscriber. This table is the one source of that policy:
the local stack's Mosquitto and embedded brokers, the compose file and the Helm chart
are rendered from it (:func:`mosquitto_acl`, :func:`amqtt_acl`), and a test checks that
the committed copies in ``deploy/`` equal the rendering.

Every user may publish its own status topic (``lameta/v1/status/<user>``, also its last
will, which Mosquitto checks against the ACL at connect) and read every status topic.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass

from servicekit.mqtt import TOPIC_ROOT


@dataclass(frozen=True)
class Identity:
    """A broker user: what it publishes and what it reads (topic filters, ``+``/``#``)."""

    user: str
    publish: tuple[str, ...]
    read: tuple[str, ...]
    about: str


def _net(kind: str) -> str:
    return f"{TOPIC_ROOT}/+/{kind}"


IDENTITIES: tuple[Identity, ...] = (
    Identity(
        "sim-ric",
        publish=(_net("state"), _net("state/keyframe/+"), _net("requests"), _net("outcomes")),
        read=(_net("control"), _net("policy")),
        about="the emulator",
    ),
    Identity(
        "xapp-composer",
        publish=(_net("control"),),
        read=(
            _net("state"),
            _net("state/keyframe/+"),
            _net("requests"),
            _net("outcomes"),
            _net("policy"),
        ),
        about="the xApp",
    ),
    Identity(
        "rapp-negotiation",
        publish=(_net("policy"),),
        read=(_net("state"), _net("state/keyframe/+"), _net("policy")),
        about="the negotiation rApp",
    ),
    Identity(
        "xapp-guard",
        publish=(_net("alerts"),),
        read=(f"{TOPIC_ROOT}/#",),
        about="the intrusion detector (reads everything, publishes alerts)",
    ),
    Identity("observer", publish=(), read=(f"{TOPIC_ROOT}/#",), about="read-only monitoring"),
    Identity(
        "operator",
        publish=(_net("policy"),),
        read=(f"{TOPIC_ROOT}/#",),
        about="a person: reads everything, may set the policy by hand",
    ),
)
"""The broker users of a deployment, one per component plus observer and operator."""

USERS = tuple(i.user for i in IDENTITIES)


def identity(user: str) -> Identity:
    """The identity of ``user``.

    Raises:
        KeyError: not a known user.
    """
    for ident in IDENTITIES:
        if ident.user == user:
            return ident
    raise KeyError(f"unknown broker user {user!r}; known: {', '.join(USERS)}")


def status_filter(user: str) -> str:
    """The status topic a user publishes (and its last will)."""
    return f"{TOPIC_ROOT}/status/{user}"


def publish_filters(user: str) -> tuple[str, ...]:
    """Everything ``user`` may publish: its topics and its own status."""
    ident = identity(user)
    return (*ident.publish, status_filter(user))


def read_filters(user: str) -> tuple[str, ...]:
    """Everything ``user`` may subscribe to: its topics and every status topic."""
    ident = identity(user)
    status = f"{TOPIC_ROOT}/status/+"
    return ident.read if f"{TOPIC_ROOT}/#" in ident.read else (*ident.read, status)


def mosquitto_acl() -> str:
    """The Mosquitto ``acl_file`` of :data:`IDENTITIES` (no pattern for anonymous users)."""
    lines = [
        "# Generated from servicekit/acl.py (servicekit.acl.mosquitto_acl); do not edit.",
        "# One user per component; each may publish only its own topics.",
    ]
    for ident in IDENTITIES:
        lines += ["", f"# {ident.about}", f"user {ident.user}"]
        lines += [f"topic write {t}" for t in publish_filters(ident.user)]
        lines += [f"topic read {t}" for t in read_filters(ident.user)]
    return "\n".join(lines) + "\n"


def amqtt_acl() -> dict[str, dict[str, list[str]]]:
    """amqtt's ``TopicAccessControlListPlugin`` configuration of the same table."""
    return {
        "publish-acl": {i.user: list(publish_filters(i.user)) for i in IDENTITIES},
        "subscribe-acl": {i.user: list(read_filters(i.user)) for i in IDENTITIES},
    }


def mosquitto_password_hash(password: str, salt: bytes | None = None) -> str:
    """A Mosquitto 2 ``password_file`` hash: ``$7$<iterations>$<salt>$<hash>``,
    PBKDF2-HMAC-SHA512 as ``mosquitto_passwd`` writes it (101 iterations, 12-byte salt)."""
    iterations = 101
    salt = secrets.token_bytes(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    b64 = base64.b64encode
    return f"$7${iterations}${b64(salt).decode()}${b64(digest).decode()}"
