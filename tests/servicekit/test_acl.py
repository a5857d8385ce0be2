"""The broker identities: each component publishes only its own topics."""

from __future__ import annotations

import base64
import hashlib

import pytest
from amqtt.plugins.topic_checking import TopicAccessControlListPlugin

from servicekit.acl import (
    USERS,
    amqtt_acl,
    mosquitto_acl,
    mosquitto_password_hash,
    publish_filters,
    read_filters,
)
from servicekit.mqtt import Topics, status_topic

T = Topics.for_network("lab")


def _may(filters, topic: str) -> bool:
    return any(TopicAccessControlListPlugin.topic_ac(topic, f) for f in filters)


@pytest.mark.parametrize(
    ("user", "own"),
    [
        ("sim-ric", {T.state, T.requests, T.outcomes}),
        ("xapp-composer", {T.control}),
        ("rapp-negotiation", {"lameta/v1/lab/policy"}),
        ("xapp-guard", {"lameta/v1/lab/alerts"}),
        ("observer", set()),
    ],
)
def test_each_user_publishes_exactly_its_own_topics(user: str, own: set[str]) -> None:
    every = {T.state, T.requests, T.outcomes, T.control, "lameta/v1/lab/policy",
             "lameta/v1/lab/alerts", "lameta/v1/status/other"}  # fmt: skip
    allowed = {t for t in every if _may(publish_filters(user), t)}
    assert allowed == own
    assert _may(publish_filters(user), status_topic(user))  # its last will


def test_readers_read_what_they_need() -> None:
    assert _may(read_filters("xapp-composer"), T.requests)
    assert _may(read_filters("xapp-composer"), T.state)
    assert not _may(read_filters("xapp-composer"), "lameta/v1/lab/alerts")
    assert _may(read_filters("sim-ric"), T.control)
    assert _may(read_filters("observer"), T.control)


def test_renderings_cover_every_user() -> None:
    text = mosquitto_acl()
    for user in USERS:
        assert f"\nuser {user}\n" in text
    assert "topic write lameta/v1/+/control" in text.split("user xapp-composer")[1].split("user")[0]
    acl = amqtt_acl()
    assert set(acl["publish-acl"]) == set(acl["subscribe-acl"]) == set(USERS)


def test_password_hash_is_mosquittos_pbkdf2_format() -> None:
    salt = b"0123456789ab"
    got = mosquitto_password_hash("s3cret", salt)
    _, kind, rounds, b64salt, b64hash = got.split("$")
    assert (kind, rounds, base64.b64decode(b64salt)) == ("7", "101", salt)
    assert base64.b64decode(b64hash) == hashlib.pbkdf2_hmac("sha512", b"s3cret", salt, 101)
