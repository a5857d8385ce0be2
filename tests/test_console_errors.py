"""Every console script of pyproject.toml, run as installed, given bad input of each kind
(an unknown choice, a negative seed or count, a vector that looks like an option, a
missing file, an out-of-range port, no or an unknown subcommand): one line on stderr that
names the flag or the file, exit code 2, never a traceback.

tests/rapp_intent/test_rapp_cli_errors.py and tests/xapp_composer/test_cli_errors.py go
through every subcommand of those two commands in more depth.
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

import pytest
from support.console import user_error

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
MISSING = "/nonexistent/lameta/input.jsonl"
EVEN = "0.25,0.25,0.25,0.25"

# (console script, arguments, text the one line must hold)
CASES = [
    ("rapp-intent", ["translate", "hello", "--model", "gpt5"], "--model: invalid choice: 'gpt5'"),
    ("rapp-intent", ["serve", "--port", "70000"], "--port: must be <= 65535"),
    ("rapp-intent", ["distill", "--seed", "-1"], "--seed: must be >= 0, got -1"),
    ("rapp-intent", ["eval", "--data", MISSING], MISSING),
    ("xapp-composer", ["bench", "--policy", "nope.onnx"], "--policy nope.onnx: no such file"),
    ("xapp-composer", ["train", "--seed", "-1"], "--seed: must be >= 0, got -1"),
    ("xapp-composer", ["bench", "--decisions", "-5"], "--decisions: must be >= 1, got -5"),
    ("xapp-composer", ["run", "--health-port", "70000"], "--health-port: must be <= 65535"),
    ("xapp-composer", ["eval", "--intents", MISSING], MISSING),
    (
        "sim-ric",
        ["inspect", "--seed", "0", "--chain", "1,2", "--intent", "-0.2,0.3,0.5,0.4"],
        "--intent: preference vector has a negative entry",
    ),
    ("sim-ric", ["optimum", "--seed", "0", "--intent", "0.5,0.5"], "--intent"),
    ("sim-ric", ["optimum", "--seed", "-1", "--intent", EVEN], "--seed: must be >= 0, got -1"),
    ("sim-ric", ["run", "--seed", "-1"], "--seed: must be >= 0, got -1"),
    ("sim-ric", ["run", "--rate", "-1"], "--rate: must be >= 0, got -1"),
    ("sim-ric", ["export-network", "--seed", "0", "--agents", "0"], "--agents: must be >= 4"),
    ("lameta-stack", ["demo", "--requests", "-5"], "--requests: must be >= 1, got -5"),
    ("lameta-stack", ["demo", "--rate", "0"], "--rate: must be > 0, got 0"),
    ("lameta-stack", ["demo", "--seed", "-1"], "--seed: must be >= 0, got -1"),
    ("lameta-stack", ["up", "--broker", "nope"], "--broker: invalid choice: 'nope'"),
    ("lameta-stack", ["status", "--dir", "/nonexistent/lameta"], "--dir /nonexistent/lameta"),
    ("lameta-studies", ["srl-report", "--intents", MISSING], MISSING),
    ("lameta-studies", ["nego-timeline", "--seed", "-1"], "--seed: must be >= 0, got -1"),
    ("rapp-negotiation", ["bench", "--seed", "-1"], "--seed: must be >= 0, got -1"),
    ("rapp-negotiation", ["bench", "--network-seed", "-1"], "--network-seed: must be >= 0"),
    ("rapp-negotiation", ["train-arbitral", "--seed", "-1"], "--seed: must be >= 0, got -1"),
    ("rapp-negotiation", ["run", "--design", "nope"], "--design: invalid choice: 'nope'"),
    ("rapp-negotiation", ["personalities", "--llm", "gpt"], "--llm: invalid choice: 'gpt'"),
    ("rapp-negotiation", ["run", "--health-port", "70000"], "--health-port: must be <= 65535"),
    ("xapp-guard", ["train", "--generations", "-1"], "--generations: must be >= 1, got -1"),
    ("xapp-guard", ["train", "--per-cell", "0"], "--per-cell: must be >= 1, got 0"),
    ("xapp-guard", ["record", "--seed", "-1", "--out", "x"], "--seed: must be >= 0, got -1"),
    ("xapp-guard", ["eval", "--test-seed", "-1"], "--test-seed: must be >= 0, got -1"),
    ("xapp-guard", ["run", "--broker", "nope://x"], "--broker / GUARD_BROKER"),
]
# Every script: no subcommand, and an unknown one.
CASES += [(s, [], "required: command") for s in SCRIPTS]
CASES += [(s, ["bogus"], "invalid choice: 'bogus'") for s in SCRIPTS]


def test_the_table_covers_every_console_script() -> None:
    assert {script for script, _, _ in CASES} == set(SCRIPTS)
    per_script = {s: sum(c[0] == s for c in CASES) for s in SCRIPTS}
    assert min(per_script.values()) >= 4, per_script


@pytest.mark.parametrize(
    ("script", "arguments", "expected"),
    CASES,
    ids=[f"{s} {' '.join(a) or '(none)'}" for s, a, _ in CASES],
)
def test_a_bad_input_is_one_line_naming_it_and_exit_code_2(
    script, arguments, expected, tmp_path
) -> None:
    # No settings from the caller's environment; a scratch working directory, so nothing a
    # command might write lands in the checkout.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RAPP_", "XAPP_", "SIM_", "NEGO_", "LAMETA_"))
    }
    line = user_error([str(BIN / script), *arguments], env=env, cwd=tmp_path)
    assert line.startswith(script), line
    assert expected in line, line
