"""``rapp-negotiation``: the negotiation rApp's command line.

- ``run --broker URL --network NAME [...]``: the service; one flag per
  :class:`~rapp_negotiation.settings.NegoSettings` field (``--help`` lists them with their
  ``NEGO_*`` variables).
- ``bench --agents 2,5,10 --negotiations N --designs none,soft,hard [--llm ...] --json``:
  maestro Fig. 3b (one JSON object).
- ``personalities --games N [--llm ...] --json [--png PATH]``: maestro Fig. 3a.
- ``train-arbitral``: trains the arbitral classifier and writes its card.

A user error is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from servicekit import cli

RUN_FLAGS = (
    "broker", "network", "intents", "intents_poll", "design", "llm", "rounds", "tolerance",
    "retrigger", "arbitral", "arbitral_dir", "policy_ttl", "max_tokens", "temperature",
    "health_host", "health_port", "mqtt_client_id", "log_level", "log_format",
)  # fmt: skip
"""The settings ``rapp-negotiation run`` takes as flags (every other one: ``NEGO_*`` only)."""

LLM_FLAGS = ("llm", "max_tokens", "temperature", "arbitral", "arbitral_dir")
"""Settings the offline commands share with the service."""


def _settings(args):
    from rapp_negotiation.settings import NegoSettings

    return NegoSettings.from_cli(args)


def _units(args):
    """The LLM unit, the regulatory unit and the arbitral unit of an offline command."""
    from rapp_negotiation.embedding import shared_minilm
    from rapp_negotiation.regulatory import Regulatory
    from rapp_negotiation.service import build_arbitral, build_negotiator

    settings = _settings(args)
    negotiator = build_negotiator(settings)
    return negotiator, Regulatory(shared_minilm()), build_arbitral(settings, negotiator)


def _write(obj: dict, out: Path | None) -> None:
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(cli.json_safe(obj), indent=1) + "\n", encoding="utf-8")


def cmd_run(args) -> int:
    from rapp_negotiation.service import main_run

    return main_run(_settings(args))


def cmd_bench(args) -> int:
    from rapp_negotiation.bench import BenchConfig, NetworkTopic, run_bench
    from servicekit.logs import configure_logging

    configure_logging(args.log_level, "json")
    cfg = cli.config_from_args(BenchConfig, args, "b_")
    negotiator, regulatory, arbitral = _units(args)
    result = run_bench(
        cfg, negotiator, regulatory, arbitral, NetworkTopic.from_seed(cfg.network_seed)
    )
    result["command"] = "rapp-negotiation " + " ".join(sys.argv[1:])
    _write(result, args.out)
    cli.print_json(result, args.json)
    return 0


def cmd_personalities(args) -> int:
    from rapp_negotiation.bench import (
        NetworkTopic,
        PersonalityConfig,
        personality_heatmap,
        run_personalities,
    )
    from servicekit.logs import configure_logging

    configure_logging(args.log_level, "json")
    cfg = cli.config_from_args(PersonalityConfig, args, "p_")
    negotiator, regulatory, _ = _units(args)
    result = run_personalities(
        cfg, negotiator, regulatory, NetworkTopic.from_seed(cfg.network_seed)
    )
    result["command"] = "rapp-negotiation " + " ".join(sys.argv[1:])
    if args.png is not None:
        personality_heatmap(result, args.png)
        result["png"] = str(args.png)
    _write(result, args.out)
    cli.print_json(result, args.json)
    return 0


def cmd_train_arbitral(args) -> int:
    from rapp_negotiation.arbitral_train import TrainConfig, train

    card = train(cli.config_from_args(TrainConfig, args, "t_"))
    cli.print_json({"metrics": card["metrics"], "model": card["model"]}, args.json)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from rapp_negotiation.arbitral_train import TrainConfig
    from rapp_negotiation.bench import BenchConfig, PersonalityConfig
    from rapp_negotiation.settings import NegoSettings

    parser = cli.ArgumentParser(
        prog="rapp-negotiation", description="MAESTRO's business plane: negotiated λ*"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "run",
        help="the negotiation service",
        description="Watches the network state, negotiates the admitted arrival rate per "
        "chain and publishes it as a retained policy. Every setting also reads NEGO_<NAME> "
        "from the environment; a flag overrides it.",
    )
    p.set_defaults(func=cmd_run, flags=cli.add_settings(p, NegoSettings, RUN_FLAGS))

    def offline(p: argparse.ArgumentParser) -> dict[str, str]:
        flags = cli.add_settings(p, NegoSettings, LLM_FLAGS)
        p.add_argument("--json", action="store_true", help="one line of JSON")
        p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
        p.add_argument("--log-level", default="WARNING", help="log level (default WARNING)")
        return flags

    p = sub.add_parser("bench", help="accuracy per optimizer design (maestro Fig. 3b)")
    cli.add_config(p, BenchConfig, dest_prefix="b_")
    p.set_defaults(func=cmd_bench, flags=offline(p))

    p = sub.add_parser("personalities", help="two-tenant games per personality (Fig. 3a)")
    cli.add_config(p, PersonalityConfig, dest_prefix="p_")
    p.add_argument("--png", type=Path, default=None, help="write the heat map here")
    p.set_defaults(func=cmd_personalities, flags=offline(p))

    p = sub.add_parser("train-arbitral", help="train the arbitral classifier")
    cli.add_config(p, TrainConfig, dest_prefix="t_")
    p.add_argument("--json", action="store_true", help="one line of JSON")
    p.set_defaults(func=cmd_train_arbitral)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``rapp-negotiation``."""
    args = build_parser().parse_args(argv)
    return cli.run(f"rapp-negotiation {args.command}", lambda: args.func(args),
                   getattr(args, "flags", None))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
