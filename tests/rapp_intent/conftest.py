"""Shared fixtures of the intent rApp tests.

The E-LAMs are loaded once per session. Their derived files (ONNX encoder, dequantised
SmolLM2) live in the settings' default cache folder, so repeated runs are fast; on a fresh
machine the first load builds them (SmolLM2 about 30 to 60 s).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rapp_intent.elam.registry import Registry
from rapp_intent.server import RappServer
from rapp_intent.settings import RappSettings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def free_port():
    """Function returning a TCP port that is free right now on 127.0.0.1."""
    return _free_port


@pytest.fixture
def make_settings(tmp_path: Path):
    """Settings isolated in ``tmp_path`` (memory, models dir), shared model cache."""

    def make(**overrides) -> RappSettings:
        values = {
            "host": "127.0.0.1",
            "port": 0,
            "metrics_port": 0,
            "memory_path": tmp_path / "memory.sqlite3",
            "models_dir": tmp_path / "models",
            "models": ["minilm"],
            # No TLS in these tests, so no caller has an identity: let anyone write the
            # memory. test_report_trust.py checks the allow-list with mutual TLS.
            "report_identities": ["*"],
        }
        values.update(overrides)
        return RappSettings(_env_file=None, **values)

    return make


@pytest.fixture
def running(make_settings, minilm):
    """Function starting a ready server (settings overrides as keywords) on a free port,
    serving the session's minilm, with its own memory file; stopped after the test."""
    servers = []

    def start(**overrides) -> RappServer:
        server = RappServer(make_settings(**overrides), registry=Registry([minilm]))
        server.start()
        assert server.wait_ready(60)
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop(grace=5)


@pytest.fixture(scope="session")
def minilm():
    """The raw minilm E-LAM (ONNX runtime), loaded once."""
    from rapp_intent.elam.encoder_onnx import OnnxEncoder
    from rapp_intent.elam.minilm import MiniLMELam

    cache = RappSettings(_env_file=None).cache_dir
    elam = MiniLMELam(OnnxEncoder(cache))
    elam.warmup()
    return elam


@pytest.fixture(scope="session")
def smollm2():
    """The raw smollm2 E-LAM (constrained decoding, one beam: fast), loaded once."""
    from rapp_intent.elam.smollm2 import SmolLM2ELam

    cache = RappSettings(_env_file=None).cache_dir
    return SmolLM2ELam(cache, decoding="constrained", beams=1)
