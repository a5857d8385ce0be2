"""Fixtures of the guard's tests (helpers in guard_support)."""

from __future__ import annotations

import pytest
from guard_support import CAL, LoggingMosquitto

from servicekit.acl import USERS
from xapp_guard.traffic import Calibration


@pytest.fixture
def cal() -> Calibration:
    return CAL


@pytest.fixture
def mosquitto(tmp_path):
    broker = LoggingMosquitto(tmp_path)
    yield broker
    broker.stop()


@pytest.fixture
def acl_mosquitto(tmp_path):
    """A logging Mosquitto that admits only the deployment's users, under their ACL."""
    broker = LoggingMosquitto(tmp_path, {u: f"pw-{u}" for u in USERS})
    yield broker
    broker.stop()
