"""Settings: environment prefix, list parsing, consistency checks."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rapp_intent.settings import RappSettings


def test_env_prefix_and_comma_lists(monkeypatch):
    monkeypatch.setenv("RAPP_MODELS", "smollm2, minilm")
    monkeypatch.setenv("RAPP_PORT", "6000")
    monkeypatch.setenv("RAPP_MAX_PROMPT_BYTES", "100")
    s = RappSettings(_env_file=None)
    assert s.models == ["smollm2", "minilm"]
    assert s.port == 6000 and s.max_prompt_bytes == 100


def test_defaults():
    s = RappSettings(_env_file=None)
    assert s.max_prompt_bytes == 4096
    assert s.models == ["minilm", "smollm2"]
    assert s.tls_cert is None
    assert s.distilled is True and s.minilm_backend == "auto"


def test_raw_and_backend_from_env(monkeypatch):
    monkeypatch.setenv("RAPP_DISTILLED", "false")
    monkeypatch.setenv("RAPP_MINILM_BACKEND", "torch-bf16")
    s = RappSettings(_env_file=None)
    assert s.distilled is False and s.minilm_backend == "torch-bf16"


@pytest.mark.parametrize(
    "overrides",
    [
        {"models": ["gpt5"]},
        {"models": []},
        {"calib_low": 0.3, "calib_high": 0.2},
        {"tls_cert": "/x.pem"},
        {"tls_client_ca": "/ca.pem"},
        {"default_model": "smollm2", "models": ["minilm"]},
        {"port": 70000},
        {"minilm_backend": "tensorrt"},
    ],
)
def test_inconsistent_settings_are_refused(overrides):
    with pytest.raises(ValidationError):
        RappSettings(_env_file=None, **overrides)
