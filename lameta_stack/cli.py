"""``lameta-stack``: the local stack that runs as deployed (identities, ACL, TLS, mTLS,
signed policy).

- ``up --dir DIR [--broker auto|mosquitto|embedded] [--rate R] [--requests N]
  [--negotiation [--negotiation-llm local|openai|scripted]] [--guard]``: start the broker,
  the rApp, the xApp, the emulator (and the negotiation rApp, the intrusion detector) in
  the background; return once every
  component reports ready; ``DIR/stack.json`` says where everything is.
- ``status --dir DIR``: which components run (exit 1 when one is down).
- ``down --dir DIR``: stop them all; nothing is left running.
- ``demo [--requests 200] [--rate 10]``: the closed loop on the stack, a results table
  and plots (``make demo``).
- ``chaos --requests N --rate R --json``: its own stack under faults and forged traffic;
  one JSON object with what was lost (see :mod:`lameta_stack.chaos`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from lameta_stack.stack import ROOT, SHIPPED_POLICY, Stack, StackConfig, StackError
from servicekit import cli
from servicekit.logs import configure_logging


def _add_loop_flags(p, *, requests: int, rate: float) -> None:
    """The flags of a driven closed-loop run (chaos, demo): load, broker, seed."""
    p.add_argument(
        "--requests",
        type=cli.bounded(int, ge=1),
        default=requests,
        help="requests the emulator issues",
    )
    p.add_argument("--rate", type=cli.bounded(float, gt=0), default=rate, help="requests/s")
    p.add_argument("--broker", choices=("auto", "mosquitto", "embedded"), default="auto")
    p.add_argument("--seed", type=cli.bounded(int, ge=0), default=0, help="emulator seed")


def cmd_up(args) -> int:
    stack = Stack(args.dir)
    config = StackConfig(
        directory=args.dir,
        broker=args.broker,
        network=args.network,
        rate=args.rate,
        requests=args.requests,
        seed=args.seed,
        rapp_models=args.rapp_models,
        policy=args.policy,
        negotiation=args.negotiation,
        guard=args.guard,
        env={"nego": {"NEGO_LLM": args.negotiation_llm}} if args.negotiation_llm else {},
    )
    if not args.policy.exists():
        raise cli.UsageError(f"--policy {args.policy}: no such file")
    try:
        desc = stack.up(config, progress=lambda s: print(f"starting {s} ...", file=sys.stderr))
    except StackError as exc:
        print(f"lameta-stack up: {exc}", file=sys.stderr)
        return 1
    print(
        f"stack ready in {args.dir} ({desc['broker']['kind']} broker on port "
        f"{desc['broker']['port']}); details: {stack.file}",
        file=sys.stderr,
    )
    if args.json:
        cli.print_json(desc)
    return 0


def cmd_status(args) -> int:
    status = Stack(args.dir).status()
    if not status:
        raise cli.UsageError(f"--dir {args.dir}: no stack here")
    if args.json:
        cli.print_json(status)
    else:
        for name, alive in status.items():
            print(f"{name:<8} {'running' if alive else 'stopped'}")
    return 0 if all(status.values()) else 1


def cmd_down(args) -> int:
    try:
        stopped = Stack(args.dir).down(grace=args.grace)
    except StackError as exc:
        raise cli.UsageError(str(exc)) from None
    left = [name for name, ok in stopped.items() if not ok]
    if left:
        print(f"lameta-stack down: still running: {', '.join(left)}", file=sys.stderr)
        return 1
    print(f"stopped {', '.join(stopped) or 'nothing'}", file=sys.stderr)
    return 0


def cmd_chaos(args) -> int:
    from lameta_stack.chaos import chaos

    result = chaos(
        args.requests,
        args.rate,
        directory=args.dir,
        broker=args.broker,
        faults=not args.no_faults,
        seed=args.seed,
        progress=lambda s: print(s, file=sys.stderr),
    )
    cli.print_json(result, compact=args.json)
    return 0


def cmd_demo(args) -> int:
    from lameta_stack.demo import DemoConfig, run_demo

    if not args.policy.exists():
        raise cli.UsageError(f"--policy {args.policy}: no such file")
    return run_demo(
        DemoConfig(
            requests=args.requests,
            rate=args.rate,
            out=args.out,
            broker=args.broker,
            seed=args.seed,
            policy=args.policy,
        )
    )


def build_parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser(prog="lameta-stack", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("up", help="start the stack in the background")
    p.add_argument("--dir", type=Path, required=True, help="stack directory (made if missing)")
    p.add_argument(
        "--broker",
        choices=("auto", "mosquitto", "embedded"),
        default="auto",
        help="Mosquitto where installed (auto), or the embedded amqtt broker",
    )
    p.add_argument("--network", default="default", help="network name in the topics")
    p.add_argument(
        "--rate",
        type=cli.bounded(float, ge=0),
        default=1.0,
        help="requests per second the emulator publishes",
    )
    p.add_argument(
        "--requests",
        type=cli.bounded(int, ge=0),
        default=None,
        help="the emulator stops after this many requests",
    )
    p.add_argument("--seed", type=cli.bounded(int, ge=0), default=0, help="emulator seed")
    p.add_argument("--rapp-models", default="minilm", help="E-LAMs the rApp loads")
    p.add_argument("--policy", type=Path, default=SHIPPED_POLICY, help="the xApp's ONNX policy")
    p.add_argument(
        "--negotiation",
        action="store_true",
        help="also run the negotiation rApp (publishes the negotiated λ*)",
    )
    p.add_argument(
        "--negotiation-llm",
        choices=("local", "openai", "scripted"),
        default=None,
        help="its LLM unit (default: NEGO_LLM, else local SmolLM2; "
        "openai: NEGO_LLM_* from the environment; scripted: a test aid)",
    )
    p.add_argument(
        "--guard",
        action="store_true",
        help="also run the intrusion detector xapp-guard (needs Mosquitto; publishes alerts)",
    )
    p.add_argument("--json", action="store_true", help="print stack.json")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("status", help="which components run")
    p.add_argument("--dir", type=Path, required=True, help="stack directory")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("chaos", help="a closed-loop run under faults and forged traffic")
    _add_loop_flags(p, requests=1000, rate=20.0)
    p.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="stack directory (default: a temporary one, removed afterwards)",
    )
    p.add_argument("--no-faults", action="store_true", help="the same run without faults")
    p.add_argument("--json", action="store_true", help="one line of JSON")
    p.set_defaults(func=cmd_chaos)

    p = sub.add_parser("demo", help="the closed loop as deployed, with a results table and plots")
    _add_loop_flags(p, requests=200, rate=10.0)
    p.add_argument(
        "--out",
        type=Path,
        default=ROOT / "runs" / "demo",
        help="where the figures, logs and the stack's files go",
    )
    p.add_argument("--policy", type=Path, default=SHIPPED_POLICY, help="the xApp's ONNX policy")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("down", help="stop every component")
    p.add_argument("--dir", type=Path, required=True, help="stack directory")
    p.add_argument(
        "--grace",
        type=cli.bounded(float, ge=0),
        default=30.0,
        help="seconds each component gets to finish before SIGKILL",
    )
    p.set_defaults(func=cmd_down)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``lameta-stack``."""
    args = build_parser().parse_args(argv)
    # The probes' own MQTT clients log at INFO; only problems belong on the terminal.
    configure_logging("WARNING")
    return cli.run(f"lameta-stack {args.command}", lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
