"""``rapp-intent``: the intent rApp's command line.

Subcommands (names are an interface: other tools call them):

- ``serve [--host H] [--port P] [--metrics-port M] [--models minilm,smollm2] [--raw] ...``:
  the gRPC service; one flag per :class:`~rapp_intent.settings.RappSettings` field
  (``--help`` lists them with their ``RAPP_*`` variables)
- ``translate "text" [--model ID] [--app APP] [--server HOST:PORT [--ca F [--cert F --key F]]]
  [--raw] [--json]``
- ``eval --data FILE.jsonl [FILE.jsonl ...] [--split train|heldout] [--models ...] [--raw]
  [--json]``
- ``predict --intents FILE.jsonl [...] --out DIR [--split ...] [--models ...] [--raw]``
- ``iokd-dataset``, ``distill``, ``iokd-report``: IoKD (:mod:`rapp_intent.iokd.cli`)

``--raw`` serves (scores) the raw E-LAMs, ignoring distilled artefacts in ``models/``.
Settings come from ``RAPP_*`` environment variables; flags override them. A user error (a
bad value, a missing file, invalid settings) is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from agentnet.intents import APPS, SPLITS, IntentFormatError, LabelledIntent, load_intents
from rapp_intent.client import RemoteConfig, translate_remote
from rapp_intent.elam.registry import Registry, load_elam
from rapp_intent.evaluate import evaluate
from rapp_intent.iokd.cli import add_subcommands
from rapp_intent.memory import Memory
from rapp_intent.predict import write_predictions
from rapp_intent.runtime import prepare_runtime
from rapp_intent.server import serve
from rapp_intent.service import (
    IntentTranslator,
    RequestError,
    TranslateInput,
    check_app,
    check_prompt,
)
from rapp_intent.settings import KNOWN_MODELS, RappSettings
from servicekit import cli

EXIT_FAILED = 1
"""Exit code of a remote call that failed (the server's status, not a user error)."""

SERVE_EXCLUDED = ("distilled",)
"""Settings ``serve`` takes from the environment only (``distilled``: ``--raw``)."""
MODEL_FLAGS = (
    "models_dir",
    "cache_dir",
    "torch_threads",
    "minilm_backend",
    "smollm2_decoding",
    "smollm2_beams",
    "smollm2_max_new_tokens",
)
"""The settings of how E-LAMs are loaded, flags of every command that loads them."""

_EVAL_HELP = """\
Score E-LAMs on labelled intents (INTENTS.md JSON Lines) and print one JSON object whose
keys are the model ids plus "even" (the constant [0.25]*4 baseline); each value is
{"overall": {"mse", "mae", "failure_rate", "n"}, "per_app": {"<app>": {...}}}.
MSE (MAE) is the mean over requests of the mean squared (absolute) error over the 4
components; requests without a valid vector are excluded from MSE and MAE and counted in
failure_rate. Each prompt is translated with its application as context, without the
in-context memory. --split keeps the records whose "split" key has that value, e.g. the
project's held-out split:
  rapp-intent eval --data agentnet/data/intents/*.jsonl --split heldout --json"""


def settings_from_args(args: argparse.Namespace) -> RappSettings:
    """The settings: environment, overridden by the flags given (``--raw``: not distilled)."""
    return RappSettings.from_cli(args, **({"distilled": False} if args.raw else {}))


def _prepare_runtime(settings: RappSettings, quiet: bool) -> None:
    prepare_runtime(
        "WARNING" if quiet else settings.log_level,
        settings.log_format,
        torch_threads=settings.torch_threads,
        passive_threads=True,
    )


def _intents(paths: Sequence[Path], split: str | None) -> list[LabelledIntent]:
    try:
        return load_intents(paths, split)
    except (OSError, IntentFormatError) as exc:
        raise cli.UsageError(f"cannot read {' '.join(map(str, paths))}: {exc}") from None


def _translation(res: Any) -> dict[str, Any]:
    """A served translation (service result or ``TranslateResponse``) as the CLI prints it."""
    return {
        "preference": [round(x, 6) for x in res.preference],
        "model": res.model,
        "calibrated": res.calibrated,
        "fallback": res.fallback,
        "failure": res.failure,
        "latency_ms": res.latency_ms,
    }


def cmd_serve(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    _prepare_runtime(settings, quiet=False)
    return serve(settings)


def _translate_local(args: argparse.Namespace) -> dict[str, Any]:
    settings = settings_from_args(args)
    try:  # the request's own checks before any model loads (the service repeats them)
        check_prompt(args.text, settings.max_prompt_bytes)
        check_app(args.app, settings.apps, "--app")
    except RequestError as exc:
        raise cli.UsageError(str(exc)) from None
    _prepare_runtime(settings, quiet=True)
    model = args.model or ("minilm" if "minilm" in settings.models else settings.models[0])
    registry = Registry([load_elam(model, settings)])
    translator = IntentTranslator.from_settings(registry, Memory(":memory:"), settings)
    try:
        return _translation(translator.translate(TranslateInput(prompt=args.text, app=args.app)))
    except RequestError as exc:
        raise cli.UsageError(str(exc)) from None


def cmd_translate(args: argparse.Namespace) -> int:
    remote = cli.config_from_args(RemoteConfig, args)
    if remote.server and args.raw:
        raise cli.UsageError("--raw applies to a local model; a server serves what it loaded")
    if remote.server:
        try:
            out = _translation(translate_remote(remote, args.text, args.model, args.app))
        except grpc.RpcError as exc:
            print(f"rapp-intent translate: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return EXIT_FAILED
    else:
        out = _translate_local(args)
    if args.json:
        cli.print_json(out)
    else:
        names = ("w_C", "w_B", "w_L", "w_P")
        print(" ".join(f"{n}={v:.3f}" for n, v in zip(names, out["preference"], strict=True)))
        flags = [f for f in ("calibrated", "fallback") if out[f]]
        print(f"model={out['model']} {' '.join(flags)} {out['failure']}".rstrip())
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    intents = _intents(args.data, args.split)
    _prepare_runtime(settings, quiet=True)
    result = evaluate([load_elam(m, settings) for m in settings.models], intents)
    if args.json:
        cli.print_json(result, compact=False)
    else:
        print(f"{'model':<10} {'mse':>8} {'mae':>8} {'fail':>6} {'n':>5}")
        for model, rep in cli.json_safe(result).items():
            o = rep["overall"]
            mse = "-" if o["mse"] is None else f"{o['mse']:.5f}"
            mae = "-" if o["mae"] is None else f"{o['mae']:.4f}"
            print(f"{model:<10} {mse:>8} {mae:>8} {o['failure_rate']:>6.1%} {o['n']:>5}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    intents = _intents(args.intents, args.split)
    _prepare_runtime(settings, quiet=True)
    summary = write_predictions(
        settings.models, intents, args.out, settings, progress=not args.no_progress
    )
    cli.print_json(summary)
    return 0


def _raw_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--raw",
        action="store_true",
        help="raw E-LAMs: ignore distilled artefacts in models_dir (RAPP_DISTILLED=false)",
    )


def _model_args(p: argparse.ArgumentParser, *extra: str) -> dict[str, str]:
    """``--raw`` and the settings flags of a command that loads E-LAMs."""
    _raw_arg(p)
    return cli.add_settings(p, RappSettings, [*extra, *MODEL_FLAGS])


def _labelled_args(p: argparse.ArgumentParser, flag: str, what: str) -> None:
    p.add_argument(flag, type=Path, nargs="+", required=True, help=what)
    p.add_argument("--split", choices=SPLITS, help="only the records of this split")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(prog="rapp-intent", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "serve",
        help="run the gRPC IntentService until SIGTERM",
        description="The IntentService over gRPC. Every setting also reads RAPP_<NAME> from "
        "the environment; a flag overrides it.",
    )
    _raw_arg(p)
    p.set_defaults(func=cmd_serve, flags=cli.add_settings(p, RappSettings, exclude=SERVE_EXCLUDED))

    p = sub.add_parser("translate", help="translate one request and print the vector")
    p.add_argument("text", help="the request text")
    p.add_argument(
        "--model",
        choices=KNOWN_MODELS,
        default="",
        help="E-LAM id (default: the default E-LAM)",
    )
    p.add_argument("--app", default="", help=f"application id ({', '.join(APPS)})")
    cli.add_config(p, RemoteConfig)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_translate, flags=_model_args(p, "max_prompt_bytes", "models"))

    p = sub.add_parser(
        "eval",
        help="score E-LAMs and the even baseline on labelled intents",
        description=_EVAL_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _labelled_args(p, "--data", "labelled intents (JSON Lines files)")
    p.add_argument("--json", action="store_true", help="print the JSON object")
    p.set_defaults(func=cmd_eval, flags=_model_args(p, "models"))

    p = sub.add_parser(
        "predict",
        help="write the E-LAMs' predictions of labelled intents to files (for SRL)",
    )
    _labelled_args(p, "--intents", "labelled intents (JSON Lines)")
    p.add_argument("--out", type=Path, required=True, help="directory of the <elam>.json files")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_predict, flags=_model_args(p, "models"))

    add_subcommands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``rapp-intent``."""
    args = build_parser().parse_args(argv)
    prog = f"rapp-intent {args.command}"
    return cli.run(prog, lambda: args.func(args), getattr(args, "flags", None))


if __name__ == "__main__":
    sys.exit(main())
