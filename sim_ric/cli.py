"""``sim-ric``: the emulator's command line.

Subcommands (names are an interface: other tools call them):

- ``export-network --seed S [--agents N] --json``
- ``inspect --seed S [--agents N] --chain a,b,c [--chain ...] --intent wC,wB,wL,wP
  [--objective weighted|paper] [--fee F] --json``
- ``optimum --seed S [--agents N] --intent ... [--objective ...] --json``
- ``run --broker mqtt://host:port | embedded`` (the MQTT service)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence

from agentnet.config import DEFAULT
from agentnet.intents import validate_vector


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated agent ids, got {text!r}"
        ) from None


def _intent(text: str) -> tuple[float, ...]:
    try:
        return validate_vector(_floats(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _json_safe(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def _print(obj, as_json: bool) -> None:
    if as_json:
        print(json.dumps(_json_safe(obj), allow_nan=False))
    else:
        print(json.dumps(_json_safe(obj), indent=2, allow_nan=False))


def _network(args):
    from agentnet.network import generate_network

    return generate_network(args.seed, DEFAULT, n_agents=args.agents)


def cmd_export(args) -> int:
    net = _network(args)
    out = net.to_dict()
    out.pop("seed", None)
    _print(out, args.json)
    return 0


def cmd_inspect(args) -> int:
    from agentnet.chain import evaluate_chain

    net = _network(args)
    results = []
    for chain in args.chain:
        try:
            r = evaluate_chain(net, chain, args.intent, objective=args.objective, fee=args.fee)
        except ValueError as exc:
            print(f"sim-ric inspect: chain {chain}: {exc}", file=sys.stderr)
            return 2
        d = r.to_dict()
        d.pop("utilities", None)
        results.append(d)
    _print(results[0] if len(results) == 1 else results, args.json)
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
        return 3
    d = opt.to_dict()
    d.pop("elam", None)
    _print(d, args.json)
    return 0


def cmd_run(args) -> int:
    from sim_ric.service import main_run

    return main_run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sim-ric", description="Agentic-network emulator")
    sub = parser.add_subparsers(dest="command", required=True)

    def net_args(p):
        p.add_argument("--seed", type=int, required=True, help="network seed")
        p.add_argument("--agents", type=int, default=None, help=f"N (default {DEFAULT.n_agents})")
        p.add_argument("--json", action="store_true", help="one line of JSON")

    p = sub.add_parser("export-network", help="print a generated network")
    net_args(p)
    p.set_defaults(func=cmd_export)

    def scoring_args(p):
        p.add_argument("--intent", type=_intent, required=True, help="wC,wB,wL,wP (sums to 1)")
        p.add_argument("--objective", choices=("weighted", "paper"), default="weighted")
        p.add_argument("--fee", type=float, default=0.0, help="E-LAM fee F(kappa)")

    p = sub.add_parser("inspect", help="score chains on a generated network")
    net_args(p)
    p.add_argument("--chain", type=_ints, action="append", required=True, help="a,b,c (agent ids)")
    scoring_args(p)
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("optimum", help="exact optimum by exhaustive search")
    net_args(p)
    scoring_args(p)
    p.set_defaults(func=cmd_optimum)

    p = sub.add_parser("run", help="the MQTT emulator service")
    p.add_argument("--broker", default=None, help="mqtt://host:port, or 'embedded'")
    p.add_argument("--network", default=None, help="network name in the topics")
    p.add_argument("--seed", type=int, default=None, help="master seed")
    p.add_argument("--agents", type=int, default=None, help="N")
    p.add_argument("--intents", default=None, help="labelled intents (JSON Lines)")
    p.add_argument("--rate", type=float, default=None, help="requests per second published")
    p.add_argument("--requests", type=int, default=None, help="stop after this many requests")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--state-period", type=float, default=None, help="seconds between states")
    p.add_argument(
        "--pending-timeout", type=float, default=None, help="seconds before a request expires"
    )
    p.add_argument("--metrics-port", type=int, default=None, help="Prometheus port (0: off)")
    p.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING, ...")
    p.add_argument("--log-format", choices=("auto", "json", "console"), default=None)
    p.set_defaults(func=cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sim-ric``."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:
        print(f"sim-ric {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
