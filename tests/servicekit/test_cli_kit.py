"""Command lines generated from typed configurations, and one-line user errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from servicekit import cli
from servicekit.settings import ServiceSettings


class DemoSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_", extra="ignore", validate_default=True)

    rate: float = Field(1.0, ge=0, description="requests per second")
    port: int = Field(8080, ge=0, le=65535, description="HTTP port")
    mode: Literal["fast", "exact"] = Field("fast", description="how")
    enabled: bool = Field(True, description="on or off")
    names: list[str] = Field(default_factory=list, description="ids")
    out: Path | None = Field(None, description="where")


@dataclass
class DemoConfig:
    steps: int = field(default=10, metadata={"help": "how many", "ge": 1})
    lr: float = field(default=3e-4, metadata={"help": "learning rate", "gt": 0})
    app: str | None = field(
        default=None, metadata={"help": "one app", "choices": ("qa", "content")}
    )
    plot: bool = field(default=True, metadata={"help": "draw the curve"})


def _parser(**kwargs) -> tuple[cli.ArgumentParser, dict]:
    p = cli.ArgumentParser(prog="demo")
    flags = cli.add_settings(p, DemoSettings, **kwargs)
    return p, flags


def test_settings_flags_default_to_none_so_the_environment_applies(monkeypatch) -> None:
    monkeypatch.setenv("DEMO_RATE", "2.5")
    p, flags = _parser()
    args = p.parse_args(["--port", "9000", "--no-enabled", "--names", "a,b", "--mode", "exact"])
    s = DemoSettings.from_cli(args)
    assert (s.rate, s.port, s.enabled, s.names, s.mode) == (2.5, 9000, False, ["a", "b"], "exact")
    assert flags["rate"] == "--rate / DEMO_RATE"
    assert "env DEMO_PORT; default 8080" in p.format_help()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rate", "-1"], "argument --rate: must be >= 0, got -1"),
        (["--port", "70000"], "argument --port: must be <= 65535, got 70000"),
        (["--port", "x"], "argument --port: expected an integer, got 'x'"),
        (["--rate", "nan"], "argument --rate: expected a finite number"),
        (["--mode", "slow"], "argument --mode: invalid choice: 'slow'"),
    ],
)
def test_bad_values_name_the_flag(argv, message, capsys) -> None:
    p, _ = _parser()
    with pytest.raises(SystemExit) as exc:
        p.parse_args(argv)
    assert exc.value.code == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"demo: {message}") and err.count("\n") == 1


def test_config_flags_carry_defaults_bounds_and_choices(capsys) -> None:
    p = cli.ArgumentParser(prog="train")
    cli.add_config(p, DemoConfig, defaults={"steps": 5})
    cfg = cli.config_from_args(DemoConfig, p.parse_args([]))
    assert cfg == DemoConfig(steps=5)
    cfg = cli.config_from_args(
        DemoConfig, p.parse_args(["--lr", "0.1", "--app", "qa", "--no-plot"])
    )
    assert (cfg.lr, cfg.app, cfg.plot) == (0.1, "qa", False)
    for argv, why in ((["--steps", "0"], "must be >= 1"), (["--lr", "0"], "must be > 0"),
                      (["--app", "x"], "invalid choice")):  # fmt: skip
        with pytest.raises(SystemExit):
            p.parse_args(argv)
        assert why in capsys.readouterr().err


def test_negative_numbers_and_lists_of_them_are_values(capsys) -> None:
    p = cli.ArgumentParser(prog="x")
    p.add_argument("--intent", type=cli.comma_list(float))
    p.add_argument("--seed", type=int)
    args = p.parse_args(["--intent", "-0.2,0.3,0.5,0.4", "--seed", "-1"])
    assert args.intent == [-0.2, 0.3, 0.5, 0.4] and args.seed == -1


def test_run_turns_user_errors_into_one_line(capsys, tmp_path) -> None:
    def missing() -> int:
        (tmp_path / "nope.json").read_text()
        return 0

    assert cli.run("demo go", missing) == 2
    err = capsys.readouterr().err
    assert err.startswith("demo go: No such file or directory: ") and "nope.json" in err
    assert err.count("\n") == 1

    def invalid() -> int:
        DemoSettings(rate=-1)
        return 0

    _, flags = _parser()
    assert cli.run("demo go", invalid, flags) == 2
    assert capsys.readouterr().err.startswith("demo go: invalid settings: --rate / DEMO_RATE:")

    def bug() -> int:
        raise KeyError("not a user error")

    with pytest.raises(KeyError):  # a bug is not hidden behind a one-liner
        cli.run("demo go", bug)


def test_json_output_has_no_nan(capsys) -> None:
    cli.print_json({"a": float("nan"), "b": [1.0, float("inf")]})
    assert capsys.readouterr().out == '{"a": null, "b": [1.0, null]}\n'
