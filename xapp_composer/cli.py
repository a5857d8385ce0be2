"""``xapp-composer``: train, export, evaluate and benchmark the SRL policy; run the xApp.

Subcommands, each flag generated from one typed configuration (``--help`` lists them with
their defaults):

- ``train [--app APP] [--mode predicted|even] [--steps N] [--minutes M] ...``: PPO
  training (:class:`~xapp_composer.configs.TrainConfig`,
  :class:`~xapp_composer.configs.TrainData`); writes ``<out>/<name>.pt``, the training
  curve ``<name>.curve.csv`` and ``.png``.
- ``export [--name A,B] [--runs DIR] [--out DIR]``: ``models/policy/<name>.onnx`` (+
  encoder, tabulated graphs, model card), checked against torch on fresh networks
  (:class:`~xapp_composer.configs.ExportConfig`).
- ``recheck [--name A,B] [--models DIR]``: the tabulated-decision parity check of exported
  policies run again and recorded in their cards, with the run-time shortlists it ran
  under (:class:`~xapp_composer.configs.RecheckConfig`); the graphs are not rewritten.
- ``eval --intents FILE.jsonl [--seeds 101,102,...] [--requests N] [--agents 81] --json``
  (:class:`~xapp_composer.configs.EvalConfig`).
- ``bench --agents 81 --decisions 1000 --json``
  (:class:`~xapp_composer.configs.BenchConfig`).
- ``keygen --out DIR`` / ``sign --policy FILE --key PEM``: an Ed25519 key pair, and a
  policy signed with it (``<stem>.signature.json``); the xApp with
  ``XAPP_POLICY_PUBLIC_KEY`` refuses an unsigned or wrongly signed policy, at start and on
  hot reload.
- ``run --broker URL --rapp host:port [--policy FILE]``: the near-RT control loop
  (:mod:`xapp_composer.loop`); every flag also reads ``XAPP_<NAME>`` from the
  environment (:class:`~xapp_composer.settings.XappSettings`).

A user error (a bad value, a missing or tampered file, invalid settings) is one line on
stderr naming the flag or the file, exit code 2 (:func:`servicekit.cli.run`). The
training and export code (torch) and the evaluation (llmkit, for the LLM baseline) are
imported inside the subcommands that use them: ``xapp-composer run`` loads neither
(``tests/test_layout.py``).
"""

from __future__ import annotations

import argparse
import copy
import resource
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agentnet.config import DEFAULT
from agentnet.network import generate_network
from servicekit import cli
from servicekit.logs import configure_logging
from xapp_composer.configs import (
    BenchConfig,
    EvalConfig,
    ExportConfig,
    RecheckConfig,
    TrainConfig,
    TrainData,
    default_name,
)
from xapp_composer.loop import main_run
from xapp_composer.predictions import PredictionsUnavailable
from xapp_composer.runtime import PolicyIntegrityError, PolicyRuntime
from xapp_composer.settings import XappSettings

RUN_FLAGS = (
    "broker",
    "rapp",
    "policy",
    "network",
    "rapp_deadline_ms",
    "max_state_age",
    "proposer_k",
    "proposer_min_agents",
    "srl_starts",
    "srl_starts_min_agents",
    "health_host",
    "health_port",
    "policy_public_key",
    "mqtt_client_id",
    "log_level",
    "log_format",
)
"""The settings ``xapp-composer run`` takes as flags (every other one: ``XAPP_*`` only)."""
PARITY_TOLERANCE = 1e-4
"""Largest ONNX-against-torch difference an export accepts."""


def load_policy(path: Path, flag: str, **options: Any) -> PolicyRuntime:
    """A verified policy, or a user error naming ``flag`` (missing file, card mismatch).
    ``options`` go to :class:`~xapp_composer.runtime.PolicyRuntime`."""
    if not path.is_file():
        raise cli.UsageError(f"{flag} {path}: no such file")
    try:
        return PolicyRuntime(path, **options)
    except PolicyIntegrityError as exc:
        raise cli.UsageError(f"{flag} {path}: {exc}") from None


# ---- train ------------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from xapp_composer.data import training_sets
    from xapp_composer.train import plot_curve, train

    data = cli.config_from_args(TrainData, args)
    cfg = cli.config_from_args(
        TrainConfig, args, name=args.name or default_name(args.app, args.mode)
    )
    if data.steps:
        per_iter = cfg.batch_episodes * (DEFAULT.n_steps + (1 if cfg.mode == "predicted" else 0))
        cfg.max_iterations = max(1, data.steps // per_iter)
    tr, val = training_sets(data.elams, data.predictions, app=cfg.app, seed=cfg.seed, progress=True)
    _, summary = train(cfg, tr, val, data.out, progress=not data.quiet)
    stem = data.out / cfg.name
    plot_curve(
        stem.with_suffix(".curve.csv"), stem.with_suffix(".curve.png"), f"{cfg.name}: training"
    )
    cli.print_json(
        {
            "name": cfg.name,
            "best": summary["best"],
            "iterations": summary["iterations"],
            "episodes": summary["episodes"],
            "seconds": summary["seconds"],
            "checkpoint": str(stem.with_suffix(".pt")),
        }
    )
    return 0


# ---- export -----------------------------------------------------------------------------------
def cmd_export(args: argparse.Namespace) -> int:
    from xapp_composer.export import export_onnx, load_checkpoint, parity_check, write_card
    from xapp_composer.export_tree import attach_tree

    cfg = cli.config_from_args(ExportConfig, args)
    names = cfg.name or sorted(p.stem for p in cfg.runs.glob("*.pt"))
    if not names:
        raise cli.UsageError(f"--runs {cfg.runs}: no checkpoints (*.pt)")
    missing = [n for n in names if not (cfg.runs / f"{n}.pt").is_file()]
    if missing:
        raise cli.UsageError(f"--name: no checkpoint {missing[0]}.pt in {cfg.runs}")
    report = {}
    for name in names:
        policy, summary = load_checkpoint(cfg.runs / f"{name}.pt")
        path = cfg.out / f"{name}.onnx"
        export_onnx(policy, path)
        parity = parity_check(policy, path)
        worst = max(parity.values())
        if worst > PARITY_TOLERANCE:
            print(f"xapp-composer export: {name}: ONNX parity error {worst:.3g}", file=sys.stderr)
            return 1
        for ext in (".curve.csv", ".curve.png"):
            if (cfg.runs / f"{name}{ext}").exists():
                shutil.copy(cfg.runs / f"{name}{ext}", cfg.out / f"{name}{ext}")
        card = write_card(path, policy, summary, parity)
        try:
            tree = attach_tree(policy, path)
        except ValueError as exc:
            print(f"xapp-composer export: {name}: {exc}", file=sys.stderr)
            return 1
        report[name] = {
            "onnx": str(path),
            "card": str(card),
            "parity_max_abs_error": worst,
            "tabulated_parity": tree["parity"],
        }
    cli.print_json(report)
    return 0


def cmd_recheck(args: argparse.Namespace) -> int:
    from xapp_composer.export_tree import record_tree_parity

    cfg = cli.config_from_args(RecheckConfig, args)
    if not cfg.models.is_dir():
        raise cli.UsageError(f"--models {cfg.models}: no such directory")
    names = cfg.name or sorted(
        p.name.removesuffix(".card.json") for p in cfg.models.glob("*.card.json")
    )
    if not names:
        raise cli.UsageError(f"--models {cfg.models}: no model cards (*.card.json)")
    report = {}
    failed = False
    for name in names:
        # Verified first: a record is only worth writing for the graphs the card names.
        load_policy(cfg.models / f"{name}.onnx", "--name")
        try:
            report[name] = record_tree_parity(cfg.models / f"{name}.onnx")
        except ValueError as exc:
            print(f"xapp-composer recheck: {exc}", file=sys.stderr)
            failed = True
    cli.print_json(report)
    return 1 if failed else 0


# ---- eval -------------------------------------------------------------------------------------
def cmd_eval(args: argparse.Namespace) -> int:
    from xapp_composer.evaluate import evaluate

    cfg = cli.config_from_args(EvalConfig, args)
    if not cfg.models.is_dir():
        raise cli.UsageError(f"--models {cfg.models}: no such directory")
    cli.print_json(evaluate(cfg, progress=not cfg.json), cfg.json)
    return 0


# ---- bench ------------------------------------------------------------------------------------
def cmd_bench(args: argparse.Namespace) -> int:
    cfg = cli.config_from_args(BenchConfig, args)
    rt = load_policy(
        cfg.policy, "--policy", starts=cfg.srl_starts, starts_min_agents=cfg.srl_starts_min_agents
    )
    nets = [generate_network(10_000 + i, n_agents=cfg.agents) for i in range(cfg.networks)]
    t0 = time.perf_counter()
    preps = [rt.prepare(net) for net in nets]
    prep_ms = (time.perf_counter() - t0) / len(nets) * 1e3
    # The next state of each network with 1% of its agents changed (one more observation,
    # one more outage event, as a tick records a crash): prepared from the previous one.
    changed_ms = []
    rng = np.random.default_rng(0)
    for net, prep in zip(nets, preps, strict=True):
        nxt = copy.deepcopy(net)
        idx = rng.choice(net.n_agents, max(1, round(cfg.changed * net.n_agents)), replace=False)
        nxt.observations = nxt.observations.copy()
        nxt.failures = nxt.failures.copy()
        nxt.observations[idx] += 1.0
        nxt.failures[idx] += 1.0
        t = time.perf_counter()
        rt.prepare(nxt, previous=prep)
        changed_ms.append((time.perf_counter() - t) * 1e3)
    prompts = ["render the scene for my headset, no lag", "summarise the lab results exactly"]
    apps = ["immersive", "critical"]
    vec = (0.2, 0.1, 0.5, 0.2)
    for i in range(min(20, cfg.decisions)):  # warm-up
        rt.decide(preps[i % len(preps)], apps[i % 2], prompts[i % 2], lambda e: vec)
    lat = np.empty(cfg.decisions)
    for i in range(cfg.decisions):
        t = time.perf_counter()
        rt.decide(preps[i % len(preps)], apps[i % 2], prompts[i % 2], lambda e: vec)
        lat[i] = time.perf_counter() - t
    out = {
        "p50_ms": float(np.percentile(lat, 50) * 1e3),
        "p99_ms": float(np.percentile(lat, 99) * 1e3),
        "provider": rt.provider,
        "agents": cfg.agents,
        "decisions": cfg.decisions,
        "networks": cfg.networks,
        "prepare_state_ms": prep_ms,
        "prepare_changed_ms": float(np.mean(changed_ms)),
        "changed_share": cfg.changed,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "tabulated_steps": preps[0].tree_levels,
        "srl_starts": rt.starts if cfg.agents >= rt.starts_min_agents else 1,
        "policy": str(cfg.policy),
    }
    cli.print_json(out, cfg.json)
    return 0


# ---- keys and signatures ----------------------------------------------------------------------
def cmd_keygen(args: argparse.Namespace) -> int:
    from servicekit.integrity import generate_keypair

    private = args.out / "policy.pem"
    if private.exists():
        raise cli.UsageError(
            f"--out {args.out}: {private.name} exists (keys are never overwritten)"
        )
    kid = generate_keypair(private, args.out / "policy.pub")
    cli.print_json({"private_key": str(private), "public_key": str(args.out / "policy.pub"),
                    "key_id": kid})  # fmt: skip
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    from servicekit.integrity import IntegrityError, load_private_key, sign_artefact

    load_policy(args.policy, "--policy")  # what is signed must match its card
    try:
        key = load_private_key(args.key)
    except (OSError, ValueError, IntegrityError) as exc:
        raise cli.UsageError(f"--key {args.key}: {exc}") from None
    cli.print_json({"signature": str(sign_artefact(args.policy, key))})
    return 0


# ---- run --------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    return main_run(XappSettings.from_cli(args))


def build_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(
        prog="xapp-composer", description="SRL policy: train, export, evaluate; the xApp"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a policy with PPO")
    cli.add_config(p, TrainConfig, defaults={"name": None})
    cli.add_config(p, TrainData)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", help="export checkpoints to ONNX with model cards")
    cli.add_config(p, ExportConfig)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("recheck", help="re-run the tabulated parity check of exported policies")
    cli.add_config(p, RecheckConfig)
    p.set_defaults(func=cmd_recheck)

    p = sub.add_parser("eval", help="SRL against the baselines on unseen networks")
    cli.add_config(p, EvalConfig)
    require(p, "intents")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("bench", help="whole-decision latency of the ONNX policy")
    cli.add_config(p, BenchConfig)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("keygen", help="a new Ed25519 key pair to sign policies with")
    p.add_argument("--out", type=Path, required=True,
                   help="directory of policy.pem (private, 0600) and policy.pub")  # fmt: skip
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("sign", help="sign a policy (every <stem>.* file) with a private key")
    p.add_argument("--policy", type=Path, required=True, help="the policy's .onnx file")
    p.add_argument("--key", type=Path, required=True, help="the Ed25519 private key (PEM)")
    p.set_defaults(func=cmd_sign)

    p = sub.add_parser(
        "run",
        help="the near-RT control loop (MQTT + rApp + ONNX policy)",
        description="The xApp. Every setting also reads XAPP_<NAME> from the environment "
        "(and the xApp descriptor's controls); a flag overrides it.",
    )
    flags = cli.add_settings(p, XappSettings, RUN_FLAGS, flags={"mqtt_client_id": "--client-id"})
    p.set_defaults(func=cmd_run, flags=flags)
    return parser


def require(parser: argparse.ArgumentParser, dest: str) -> None:
    """Make a generated flag required (argparse then names it when it is missing)."""
    for action in parser._actions:
        if action.dest == dest:
            action.required = True
            return
    raise KeyError(dest)


def run(prog: str, command: Callable[[], int], flags: dict[str, str] | None = None) -> int:
    """:func:`servicekit.cli.run`, with a policy that fails its card and E-LAM predictions
    the rApp cannot make reported as user errors too (one line, exit code 2)."""

    def checked() -> int:
        try:
            return command()
        except (PolicyIntegrityError, PredictionsUnavailable) as exc:
            raise cli.UsageError(str(exc)) from None

    return cli.run(prog, checked, flags)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``xapp-composer``."""
    args = build_parser().parse_args(argv)
    if args.command != "run":  # ``run`` configures its logging from its settings
        # Logs go to stderr so that ``--json`` output on stdout stays one parseable object.
        configure_logging("WARNING" if getattr(args, "json", False) else "INFO")
    return run(
        f"xapp-composer {args.command}", lambda: args.func(args), getattr(args, "flags", None)
    )


if __name__ == "__main__":
    sys.exit(main())
