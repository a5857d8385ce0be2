"""Bad input to every ``xapp-composer`` and ``lameta-studies`` subcommand: one line on
stderr that names the flag or the file, exit code 2, never a traceback (real processes)."""

from __future__ import annotations

import json
import os
import sys

import pytest
from support.console import user_error
from support.loop import SHIPPED, copy_policy

from agentnet.intents import project_intent_files

XAPP = [sys.executable, "-m", "xapp_composer.cli"]
STUDIES = [sys.executable, "-m", "lameta_studies.cli"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """Files the cases point at: a tampered policy, an empty runs directory, a file that
    is not JSON Lines, a labelled intents file."""
    tmp = tmp_path_factory.mktemp("bad-inputs")
    tampered = copy_policy(SHIPPED, tmp / "tampered")
    card = tampered.with_suffix(".card.json")
    data = json.loads(card.read_text())
    data["sha256"] = "0" * 64
    card.write_text(json.dumps(data))
    (tmp / "runs").mkdir()
    (tmp / "notes.txt").write_text("not json\n")
    intents = project_intent_files()[0]
    return {
        "TAMPERED": str(tampered),
        "TAMPERED_DIR": str(tampered.parent),
        "RUNS": str(tmp / "runs"),
        "NOTES": str(tmp / "notes.txt"),
        "INTENTS": str(intents),
        "MISSING": str(tmp / "missing"),
    }


CASES = [
    # (command, arguments, what the line must name)
    ("train", ["--seed", "-1"], "--seed"),
    ("train", ["--app", "nope"], "--app"),
    ("train", ["--lr", "0"], "--lr"),
    ("train", ["--minutes", "abc"], "--minutes"),
    ("train", ["--predictions", "cloud"], "--predictions"),
    ("train", ["--agents-mix", "81,2"], "--agents-mix"),
    ("export", ["--runs", "RUNS"], "--runs"),
    ("export", ["--runs", "RUNS", "--name", "srl-qa"], "--name"),
    ("recheck", ["--models", "MISSING"], "--models"),
    ("recheck", ["--models", "RUNS"], "--models"),
    ("recheck", ["--name", "srl-nope"], "--name"),
    ("recheck", ["--models", "TAMPERED_DIR"], "does not match its card"),
    ("eval", [], "--intents"),
    ("eval", ["--intents", "MISSING"], "MISSING"),
    ("eval", ["--intents", "NOTES", "--llm", "off"], "NOTES"),
    ("eval", ["--intents", "INTENTS", "--seeds", "101,x"], "--seeds"),
    ("eval", ["--intents", "INTENTS", "--requests", "0"], "--requests"),
    ("eval", ["--intents", "INTENTS", "--agents", "2"], "--agents"),
    ("eval", ["--intents", "INTENTS", "--llm", "gpt"], "--llm"),
    ("eval", ["--intents", "INTENTS", "--models", "MISSING"], "--models"),
    ("bench", ["--policy", "MISSING"], "--policy"),
    ("bench", ["--policy", "RUNS"], "--policy"),
    ("bench", ["--policy", "TAMPERED"], "does not match its card"),
    ("bench", ["--decisions", "-5"], "--decisions"),
    ("bench", ["--agents", "2"], "--agents"),
    ("bench", ["--networks", "0"], "--networks"),
    ("run", ["--rapp", "nohost"], "--rapp"),
    ("run", ["--broker", "http://broker:1883"], "--broker"),
    ("run", ["--max-state-age", "-1"], "--max-state-age"),
    ("run", ["--proposer-k", "-1"], "--proposer-k"),
    ("run", ["--health-port", "70000"], "--health-port"),
    ("run", ["--log-format", "xml"], "--log-format"),
    ("run", ["--policy", "MISSING"], "MISSING"),
    ("run", ["--policy", "TAMPERED"], "--policy"),
    ("srl-report", [], "--intents"),
    ("srl-report", ["--intents", "MISSING"], "MISSING"),
    ("srl-report", ["--intents", "INTENTS", "--sizes", "50,2"], "--sizes"),
    ("srl-report", ["--intents", "INTENTS", "--seeds", "-1"], "--seeds"),
    ("srl-report", ["--intents", "INTENTS", "--models", "MISSING"], "--models"),
    ("srl-report", ["--intents", "INTENTS", "--elam", "gpt"], "--elam"),
]


@pytest.mark.parametrize(
    ("command", "arguments", "named"), CASES, ids=[f"{c}:{' '.join(a)}" for c, a, _ in CASES]
)
def test_bad_input_is_one_line_and_exit_code_2(command, arguments, named, files) -> None:
    studies = command == "srl-report"
    argv = [files.get(a, a) for a in arguments]
    # No XAPP_* settings from the caller's environment, and no fixed health port.
    env = {k: v for k, v in os.environ.items() if not k.startswith("XAPP_")}
    line = user_error(
        [*(STUDIES if studies else XAPP), command, *argv], env={**env, "XAPP_HEALTH_PORT": "0"}
    )
    prog = "lameta-studies" if studies else "xapp-composer"
    assert line.startswith(f"{prog} {command}: "), line
    assert files.get(named, named) in line, line
