"""Settings: environment parsing, lists, validation, and flags over environment over .env."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from rapp_intent.cli import build_parser, settings_from_args
from rapp_intent.settings import RappSettings
from servicekit.settings import validation_message


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    """No RAPP_* variable of the developer's shell, no .env of the checkout."""
    for name in list(os.environ):
        if name.startswith("RAPP_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _cli(*argv: str) -> RappSettings:
    """The settings ``rapp-intent`` builds for a command line (environment included)."""
    return settings_from_args(build_parser().parse_args(list(argv)))


def test_environment_values_are_parsed_to_their_types(monkeypatch) -> None:
    monkeypatch.setenv("RAPP_PORT", "6000")
    monkeypatch.setenv("RAPP_GRACE_S", "2.5")
    monkeypatch.setenv("RAPP_DISTILLED", "false")
    monkeypatch.setenv("RAPP_TLS_CERT", "/etc/rapp/server.pem")
    monkeypatch.setenv("RAPP_TLS_KEY", "/etc/rapp/server.key")
    monkeypatch.setenv("rapp_minilm_backend", "torch-bf16")  # names are case-insensitive
    s = RappSettings()
    assert (s.port, s.grace_s, s.distilled) == (6000, 2.5, False)
    assert s.tls_cert == Path("/etc/rapp/server.pem") and s.minilm_backend == "torch-bf16"


def test_comma_separated_lists_are_split_trimmed_and_deduplicated(monkeypatch) -> None:
    monkeypatch.setenv("RAPP_MODELS", " smollm2, minilm ,smollm2,")
    monkeypatch.setenv("RAPP_APPS", "qa,critical")
    s = RappSettings()
    assert s.models == ["smollm2", "minilm"]  # order kept, the repeat dropped
    assert s.apps == ["qa", "critical"]
    assert _cli("serve", "--models", "minilm,smollm2").models == ["minilm", "smollm2"]


def test_a_flag_beats_the_environment_which_beats_the_env_file(monkeypatch, tmp_path) -> None:
    (tmp_path / ".env").write_text("RAPP_PORT=6001\nRAPP_METRICS_PORT=9001\nRAPP_HOST=10.0.0.1\n")
    assert _cli("serve").port == 6001  # from .env
    monkeypatch.setenv("RAPP_PORT", "6002")
    s = _cli("serve")
    assert (s.port, s.metrics_port, s.host) == (6002, 9001, "10.0.0.1")  # env over .env
    s = _cli("serve", "--port", "6003", "--host", "0.0.0.0")
    assert (s.port, s.metrics_port, s.host) == (6003, 9001, "0.0.0.0")  # flag over env
    # --raw overrides RAPP_DISTILLED; without it the environment decides.
    monkeypatch.setenv("RAPP_DISTILLED", "true")
    assert _cli("eval", "--data", "x.jsonl").distilled is True
    assert _cli("eval", "--data", "x.jsonl", "--raw").distilled is False


def test_log_level_is_normalised_and_checked() -> None:
    assert RappSettings(log_level="debug").log_level == "DEBUG"
    with pytest.raises(ValidationError, match="unknown log level"):
        RappSettings(log_level="loud")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"models": ["gpt5"]}, "unknown model ids ['gpt5']"),
        ({"models": []}, "at least one E-LAM"),
        ({"calib_low": 0.3, "calib_high": 0.2}, "calib_high must be larger than calib_low"),
        ({"tls_cert": "/x.pem"}, "tls_cert and tls_key must be given together"),
        ({"tls_client_ca": "/ca.pem"}, "mutual TLS (tls_client_ca) needs tls_cert"),
        ({"default_model": "smollm2", "models": ["minilm"]}, "is not among the loaded models"),
        ({"port": 70000}, "less than or equal to 65535"),
        ({"minilm_backend": "tensorrt"}, "'auto', 'onnx', 'torch' or 'torch-bf16'"),
        ({"smollm2_beams": 0}, "greater than or equal to 1"),
    ],
)
def test_inconsistent_settings_are_refused_with_the_reason(overrides, message) -> None:
    with pytest.raises(ValidationError) as info:
        RappSettings(**overrides)
    assert message in validation_message(info.value)


def test_a_refused_setting_is_named_by_its_flag_and_variable(monkeypatch) -> None:
    monkeypatch.setenv("RAPP_MAX_BATCH", "0")
    args = build_parser().parse_args(["serve"])
    with pytest.raises(ValidationError) as info:
        RappSettings.from_cli(args)
    assert validation_message(info.value, args.flags).startswith("--max-batch / RAPP_MAX_BATCH:")


def test_only_the_xapp_may_write_the_memory_by_default(monkeypatch) -> None:
    monkeypatch.delenv("RAPP_REPORT_IDENTITIES", raising=False)
    assert RappSettings(_env_file=None).report_identities == ["xapp-composer"]
    monkeypatch.setenv("RAPP_REPORT_IDENTITIES", "xapp-composer, lab-tool")
    assert RappSettings(_env_file=None).report_identities == ["xapp-composer", "lab-tool"]
