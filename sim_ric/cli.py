"""``sim-ric``: the emulator's command line.

Subcommands (names are an interface: other tools call them):

- ``export-network --seed S [--agents N] --json``
- ``inspect --seed S [--agents N] --chain a,b,c [--chain ...] --intent wC,wB,wL,wP
  [--objective weighted|paper] [--fee F] --json``
- ``optimum --seed S [--agents N] --intent ... [--objective ...] --json``
- ``run [--broker mqtt://host:port | embedded] [...]``: the MQTT service; one flag per
  :class:`~sim_ric.settings.SimSettings` field (``--help`` lists them with their
  ``SIM_*`` variables)

A user error (a bad value, a missing file) is one line on stderr and exit code 2; an
optimum beyond the exhaustive search's limit is exit code 3.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from agentnet.config import DEFAULT
from agentnet.intents import validate_vector
from servicekit import cli
from sim_ric.settings import SimSettings

EXIT_UNAVAILABLE = 3

RUN_FLAGS = (
    "broker", "network", "seed", "agents", "intents", "intents_split", "rate", "requests",
    "duration", "state_period", "state_format", "pending_timeout", "objective", "metrics_host",
    "metrics_port", "mqtt_client_id", "journal", "log_level", "log_format",
)  # fmt: skip
"""The settings ``sim-ric run`` takes as flags (every other one: ``SIM_*`` only)."""


def _chain(text: str) -> list[int]:
    try:
        ids = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated agent ids, got {text!r}"
        ) from None
    if any(i < 0 for i in ids):
        raise argparse.ArgumentTypeError(f"agent ids are >= 0, got {text!r}")
    return ids


def _intent(text: str) -> tuple[float, ...]:
    try:
        return validate_vector([float(x) for x in text.split(",")])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _network(args):
    from agentnet.network import generate_network

    return generate_network(args.seed, DEFAULT, n_agents=args.agents)


def cmd_export(args) -> int:
    net = _network(args)
    out = net.to_dict()
    out.pop("seed", None)
    cli.print_json(out, args.json)
    return 0


def cmd_inspect(args) -> int:
    from agentnet.chain import evaluate_chain

    net = _network(args)
    results = []
    for chain in args.chain:
        try:
            r = evaluate_chain(net, chain, args.intent, objective=args.objective, fee=args.fee)
        except ValueError as exc:
            raise cli.UsageError(f"--chain {','.join(map(str, chain))}: {exc}") from None
        d = r.to_dict()
        d.pop("utilities", None)
        results.append(d)
    cli.print_json(results[0] if len(results) == 1 else results, args.json)
    return 0


def cmd_optimum(args) -> int:
    from agentnet.optimum import OptimumUnavailable, build_search_space, exact_optimum

    net = _network(args)
    try:
        space = build_search_space(net)
        opt = exact_optimum(
            space, args.intent, fees={"fee": args.fee}, objective=args.objective, cfg=net.cfg
        )
    except OptimumUnavailable as exc:
        print(f"sim-ric optimum: unavailable: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    d = opt.to_dict()
    d.pop("elam", None)
    cli.print_json(d, args.json)
    return 0


def cmd_run(args) -> int:
    from sim_ric.service import main_run

    return main_run(SimSettings.from_cli(args))


def build_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(prog="sim-ric", description="Agentic-network emulator")
    sub = parser.add_subparsers(dest="command", required=True)

    def net_args(p):
        p.add_argument("--seed", type=cli.bounded(int, ge=0), required=True, help="network seed")
        p.add_argument("--agents", type=cli.bounded(int, ge=4), default=None,
                       help=f"N (default {DEFAULT.n_agents})")  # fmt: skip
        p.add_argument("--json", action="store_true", help="one line of JSON")

    p = sub.add_parser("export-network", help="print a generated network")
    net_args(p)
    p.set_defaults(func=cmd_export)

    def scoring_args(p):
        p.add_argument("--intent", type=_intent, required=True, help="wC,wB,wL,wP (sums to 1)")
        p.add_argument("--objective", choices=("weighted", "paper"), default="weighted")
        p.add_argument("--fee", type=cli.bounded(float, ge=0), default=0.0,
                       help="E-LAM fee F(kappa)")  # fmt: skip

    p = sub.add_parser("inspect", help="score chains on a generated network")
    net_args(p)
    p.add_argument("--chain", type=_chain, action="append", required=True, help="a,b,c (agent ids)")
    scoring_args(p)
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("optimum", help="exact optimum by exhaustive search")
    net_args(p)
    scoring_args(p)
    p.set_defaults(func=cmd_optimum)

    p = sub.add_parser(
        "run",
        help="the MQTT emulator service",
        description="The emulator as an MQTT service. Every setting also reads SIM_<NAME> "
        "from the environment; a flag overrides it.",
    )
    p.set_defaults(func=cmd_run, flags=cli.add_settings(p, SimSettings, RUN_FLAGS))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sim-ric``."""
    args = build_parser().parse_args(argv)
    return cli.run(f"sim-ric {args.command}", lambda: args.func(args), getattr(args, "flags", None))


if __name__ == "__main__":
    sys.exit(main())
