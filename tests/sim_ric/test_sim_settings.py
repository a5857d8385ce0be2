"""sim_ric.settings: SIM_* environment, CLI overrides, the default intents, validation."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from agentnet.intents import load_intents, project_intent_files
from sim_ric.cli import build_parser
from sim_ric.settings import SimSettings


def _run_args(*argv: str):
    return build_parser().parse_args(["run", *argv])


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith("SIM_"):
            monkeypatch.delenv(key)


def test_defaults():
    s = SimSettings()
    assert (s.broker, s.network, s.seed, s.rate, s.state_period) == (
        "embedded",
        "default",
        0,
        1.0,
        1.0,
    )
    assert s.elams == {"minilm": 22.7e6, "smollm2": 134.5e6}
    assert s.split == "heldout" and s.client_id == "sim-ric-default"
    cfg = s.emulator_config()
    assert (cfg.network, cfg.pending_timeout_s, dict(cfg.elams)) == ("default", 30.0, s.elams)


def test_environment_then_flags(monkeypatch):
    monkeypatch.setenv("SIM_BROKER", "mqtt://b:1884")
    monkeypatch.setenv("SIM_RATE", "3.5")
    monkeypatch.setenv("SIM_SEED", "4")
    monkeypatch.setenv("SIM_ELAMS", json.dumps({"tiny": 1e6}))
    monkeypatch.setenv("SIM_INTENTS", "a.jsonl, b.jsonl")
    s = SimSettings.from_cli(_run_args("--seed", "9", "--network", "lab"))
    assert (s.broker, s.rate, s.seed, s.network) == ("mqtt://b:1884", 3.5, 9, "lab")
    assert s.elams == {"tiny": 1e6}
    assert [p.name for p in s.intents] == ["a.jsonl", "b.jsonl"]
    s = SimSettings.from_cli(
        _run_args(
            "--broker",
            "embedded",
            "--rate",
            "0",
            "--state-period",
            "0.5",
            "--pending-timeout",
            "7",
            "--requests",
            "3",
            "--duration",
            "2",
            "--log-level",
            "debug",
            "--metrics-port",
            "9100",
        )
    )
    assert (s.broker, s.rate, s.state_period, s.pending_timeout) == ("embedded", 0.0, 0.5, 7.0)
    assert (s.requests, s.duration, s.log_level, s.metrics_port) == (3, 2.0, "DEBUG", 9100)


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"broker": "tcp://x"}, "scheme"),
        ({"network": "a/b"}, "network name"),
        ({"rate": -1}, "greater than or equal"),
        ({"state_period": 0}, "greater than"),
        ({"agents": 2}, "greater than or equal"),
        ({"log_level": "LOUD"}, "log level"),
        ({"elams": {"": 1}}, "non-empty"),
        ({"reconnect_min_delay": 5, "reconnect_max_delay": 1}, "reconnect"),
        ({"tls_cert": "c.pem"}, "tls_cert and tls_key"),
    ],
)
def test_invalid_settings(kwargs, text):
    with pytest.raises(ValidationError, match=text):
        SimSettings(**kwargs)


def test_project_intents_are_found_and_have_a_heldout_split():
    files = project_intent_files()
    assert {f.name for f in files} >= {
        "content.jsonl",
        "qa.jsonl",
        "immersive.jsonl",
        "critical.jsonl",
    }
    heldout = load_intents(files, "heldout")
    train = load_intents(files, "train")
    assert heldout and train
    assert {i.app for i in heldout} == {"content", "qa", "immersive", "critical"}
    s = SimSettings()
    assert s.intent_files() == files


def test_missing_intents_file_is_a_clear_error(tmp_path):
    s = SimSettings(intents=str(tmp_path / "nope.jsonl"))
    with pytest.raises(FileNotFoundError, match=r"nope\.jsonl"):
        s.intent_files()


def test_all_split(tmp_path):
    f = tmp_path / "i.jsonl"
    f.write_text(json.dumps({"prompt": "p", "s": [0.25] * 4, "app": "qa", "split": "train"}) + "\n")
    s = SimSettings(intents=str(f), intents_split="all")
    assert s.split is None
    assert len(load_intents(s.intent_files(), s.split)) == 1
