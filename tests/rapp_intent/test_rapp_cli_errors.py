"""Bad input to every ``rapp-intent`` subcommand: one line on stderr, exit code 2.

Each case runs the real command as a process. The line must name what is wrong (the flag,
the setting or the file), and no traceback may reach the user. Every case is refused
before a model loads: a case costs one interpreter start-up and the imports of the
command line.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from support.console import user_error

REPO = Path(__file__).resolve().parents[2]
MISSING = "/nonexistent/lameta/intents.jsonl"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("cli-errors")
    good = d / "good.jsonl"
    good.write_text('{"prompt": "x", "s": [1, 0, 0, 0], "app": "qa", "split": "heldout"}\n')
    bad = d / "bad.jsonl"
    bad.write_text('{"prompt": "x", "s": [1, 1, 1, 1], "app": "qa"}\n')
    return {"good": str(good), "bad": str(bad), "out": str(d / "out")}


# (subcommand arguments, extra environment, text the one line must hold)
CASES = [
    ([], {}, "required: command"),
    (["bogus"], {}, "invalid choice: 'bogus'"),
    # serve: flags generated from RappSettings, their bounds, choices and validators
    (["serve", "--port", "70000"], {}, "--port: must be <= 65535, got 70000"),
    (["serve"], {"RAPP_PORT": "x"}, "--port / RAPP_PORT"),
    (["serve", "--models", "gpt5"], {}, "--models / RAPP_MODELS: Value error, unknown model"),
    (["serve", "--tls-cert", "server.pem"], {}, "tls_cert and tls_key must be given together"),
    # translate
    (["translate", "hello", "--model", "gpt5"], {}, "--model: invalid choice: 'gpt5'"),
    (["translate", "   "], {}, "prompt is empty"),
    (["translate", "hello", "--app", "games"], {}, "--app 'games' is unknown"),
    (["translate", "hello", "--ca", "ca.pem"], {}, "--ca/--cert/--key apply to --server"),
    (["translate", "hello", "--server", "127.0.0.1:1", "--raw"], {}, "--raw applies to a local"),
    (
        ["translate", "hello", "--server", "127.0.0.1:1", "--ca", "/nonexistent/ca.pem"],
        {},
        "No such file or directory: /nonexistent/ca.pem",
    ),
    (["translate", "hello", "--max-prompt-bytes", "3"], {}, "prompt is 5 bytes"),
    # eval
    (["eval"], {}, "required: --data"),
    (["eval", "--data", MISSING], {}, f"cannot read {MISSING}"),
    (["eval", "--data", "{bad}"], {}, "sums to"),
    (["eval", "--data", "{good}", "--split", "dev"], {}, "--split: invalid choice: 'dev'"),
    (["eval", "--data", "{good}", "--models", "gpt9"], {}, "unknown model ids ['gpt9']"),
    (["eval", "--data", "{good}"], {"RAPP_MINILM_BACKEND": "gpu"}, "RAPP_MINILM_BACKEND"),
    # predict
    (["predict", "--intents", "{good}"], {}, "required: --out"),
    (["predict", "--intents", MISSING, "--out", "{out}"], {}, f"cannot read {MISSING}"),
    (["predict", "--intents", "{good}", "--out", "{out}", "--torch-threads", "-1"], {}, ">= 0"),
    # iokd-dataset
    (["iokd-dataset", "--app", "games"], {}, "--app: unknown applications ['games']"),
    (["iokd-dataset", "--clam", "gpt"], {}, "--clam: invalid choice: 'gpt'"),
    (["iokd-dataset", "--ratio", "-1"], {}, "--ratio: must be >= 0, got -1"),
    (["iokd-dataset"], {"RAPP_CLAM_TIMEOUT_S": "-1"}, "timeout_s"),
    # distill
    (["distill", "--model", "gpt"], {}, "--model: invalid choice: 'gpt'"),
    (["distill", "--beta-base", "0"], {}, "--beta-base: must be > 0, got 0"),
    (["distill", "--epochs", "0"], {}, "--epochs: must be >= 1, got 0"),
    (["distill", "--max-minutes", "nan"], {}, "--max-minutes: expected a finite number"),
    (["distill", "--dev", MISSING], {}, f"--dev: no such file: {MISSING}"),
    (["distill"], {"RAPP_SMOLLM2_BEAMS": "0"}, "invalid settings: smollm2_beams"),
    # iokd-report
    (["iokd-report", "--families", "gpt"], {}, "unknown families ['gpt']"),
    (["iokd-report", "--fig7-ensemble", "0"], {}, "--fig7-ensemble: must be >= 1, got 0"),
    (["iokd-report", "--dev", MISSING], {}, f"--dev: no such file: {MISSING}"),
]


@pytest.mark.parametrize(
    ("argv", "env", "expected"), CASES, ids=[" ".join(c[0]) or "(none)" for c in CASES]
)
def test_a_bad_input_is_one_line_and_exit_code_2(argv, env, expected, files) -> None:
    argv = [a.format(**files) for a in argv]
    line = user_error(
        [sys.executable, "-m", "rapp_intent.cli", *argv], env={**os.environ, **env}, cwd=REPO
    )
    assert line.startswith("rapp-intent"), line
    assert expected in line, line
