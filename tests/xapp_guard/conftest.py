"""Fixtures of the guard's tests (helpers in guard_support)."""

from __future__ import annotations

import pytest
from guard_support import CAL, LoggingMosquitto

from xapp_guard.traffic import Calibration


@pytest.fixture
def cal() -> Calibration:
    return CAL


@pytest.fixture
def mosquitto(tmp_path):
    broker = LoggingMosquitto(tmp_path)
    yield broker
    broker.stop()
