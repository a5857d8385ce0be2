"""``rapp-intent``: the intent rApp's command line.

Subcommands (names are an interface: other tools call them):

- ``serve [--host H] [--port P] [--metrics-port M] [--models minilm,smollm2] [--raw]``
- ``translate "text" [--model ID] [--app APP] [--server HOST:PORT [--ca F [--cert F --key F]]]
  [--raw] [--json]``
- ``eval --data FILE.jsonl [FILE.jsonl ...] [--split train|heldout] [--models ...] [--raw]
  [--json]``

``--raw`` serves (scores) the raw E-LAMs, ignoring distilled artefacts in ``models/``.

Settings come from ``RAPP_*`` environment variables (:mod:`rapp_intent.settings`); flags
override them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from agentnet.intents import SPLITS
from rapp_intent.settings import KNOWN_MODELS, RappSettings

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


_RAW_HELP = "raw E-LAMs: ignore distilled artefacts in models_dir (RAPP_DISTILLED=false)"


def _models(text: str) -> list[str]:
    models = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in models if m not in KNOWN_MODELS]
    if unknown or not models:
        raise argparse.ArgumentTypeError(
            f"unknown model ids {unknown or [text]}; known: {', '.join(KNOWN_MODELS)}"
        )
    return models


def _settings(args: argparse.Namespace) -> RappSettings:
    overrides = {
        key: value
        for key, value in (
            ("host", getattr(args, "host", None)),
            ("port", getattr(args, "port", None)),
            ("metrics_port", getattr(args, "metrics_port", None)),
            ("models", getattr(args, "models", None)),
            ("distilled", False if getattr(args, "raw", False) else None),
        )
        if value is not None
    }
    try:
        settings = RappSettings(**overrides)
    except Exception as exc:  # pydantic ValidationError: show it as a usage error
        raise SystemExit(f"rapp-intent: invalid settings: {exc}") from None
    return settings


def _prepare_runtime(settings: RappSettings, quiet: bool) -> None:
    """Process-wide set-up done once at the edge: offline hub, threads, logging."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Idle OpenMP threads sleep instead of spinning: on a shared CPU, spinning threads of
    # several processes slow each other down by an order of magnitude (measured).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    import transformers

    from servicekit.logs import configure_logging

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    configure_logging("WARNING" if quiet else settings.log_level, settings.log_format)


def _json_safe(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def cmd_serve(args: argparse.Namespace) -> int:
    from rapp_intent.server import serve

    settings = _settings(args)
    _prepare_runtime(settings, quiet=False)
    return serve(settings)


def _translate_remote(args: argparse.Namespace, settings: RappSettings) -> dict:
    import grpc

    from lameta_proto.v1 import intent_pb2, intent_pb2_grpc

    if args.cert is not None and args.ca is None:
        raise SystemExit("rapp-intent: --cert/--key (mutual TLS) need --ca")
    if (args.cert is None) != (args.key is None):
        raise SystemExit("rapp-intent: --cert and --key go together")
    if args.ca is not None:
        try:
            creds = grpc.ssl_channel_credentials(
                root_certificates=args.ca.read_bytes(),
                private_key=args.key.read_bytes() if args.key else None,
                certificate_chain=args.cert.read_bytes() if args.cert else None,
            )
        except OSError as exc:
            raise SystemExit(f"rapp-intent: cannot read a TLS file: {exc}") from None
        channel = grpc.secure_channel(args.server, creds)
    else:
        channel = grpc.insecure_channel(args.server)
    with channel:
        stub = intent_pb2_grpc.IntentServiceStub(channel)
        try:
            resp = stub.Translate(
                intent_pb2.TranslateRequest(prompt=args.text, model=args.model, app=args.app),
                timeout=args.timeout,
            )
        except grpc.RpcError as exc:
            raise SystemExit(f"rapp-intent: {exc.code().name}: {exc.details()}") from None
    return {
        "preference": [round(x, 6) for x in resp.preference],
        "model": resp.model,
        "calibrated": resp.calibrated,
        "fallback": resp.fallback,
        "failure": resp.failure,
        "latency_ms": resp.latency_ms,
    }


def cmd_translate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not args.server and any(x is not None for x in (args.ca, args.cert, args.key)):
        print("rapp-intent: --ca/--cert/--key apply to --server calls", file=sys.stderr)
        return 2
    if args.server and args.raw:
        print(
            "rapp-intent: --raw applies to a local model; a server serves what it loaded",
            file=sys.stderr,
        )
        return 2
    if args.server:
        out = _translate_remote(args, settings)
    else:
        _prepare_runtime(settings, quiet=True)
        from rapp_intent.elam.registry import Registry, load_elam
        from rapp_intent.memory import Memory
        from rapp_intent.service import (
            IntentTranslator,
            Limits,
            RequestError,
            TranslateInput,
        )

        model = args.model or ("minilm" if "minilm" in settings.models else settings.models[0])
        registry = Registry([load_elam(model, settings)])
        translator = IntentTranslator(
            registry,
            Memory(":memory:"),
            limits=Limits(max_prompt_bytes=settings.max_prompt_bytes, apps=tuple(settings.apps)),
        )
        try:
            res = translator.translate(TranslateInput(prompt=args.text, app=args.app))
        except RequestError as exc:
            print(f"rapp-intent: {exc}", file=sys.stderr)
            return 2
        out = {
            "preference": [round(x, 6) for x in res.preference],
            "model": res.model,
            "calibrated": res.calibrated,
            "fallback": res.fallback,
            "failure": res.failure,
            "latency_ms": res.latency_ms,
        }
    if args.json:
        print(json.dumps(out))
    else:
        names = ("w_C", "w_B", "w_L", "w_P")
        print(" ".join(f"{n}={v:.3f}" for n, v in zip(names, out["preference"], strict=True)))
        flags = [f for f in ("calibrated", "fallback") if out[f]]
        print(f"model={out['model']} {' '.join(flags)} {out['failure']}".rstrip())
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from agentnet.intents import IntentFormatError, load_intents
    from rapp_intent.elam.registry import load_elam
    from rapp_intent.evaluate import evaluate

    settings = _settings(args)
    try:
        intents = load_intents(args.data, args.split)
    except (OSError, IntentFormatError) as exc:
        names = " ".join(map(str, args.data))
        print(f"rapp-intent: cannot read {names}: {exc}", file=sys.stderr)
        return 2
    _prepare_runtime(settings, quiet=True)
    elams = [load_elam(m, settings) for m in settings.models]
    result = _json_safe(evaluate(elams, intents))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{'model':<10} {'mse':>8} {'mae':>8} {'fail':>6} {'n':>5}")
        for model, rep in result.items():
            o = rep["overall"]
            mse = "-" if o["mse"] is None else f"{o['mse']:.5f}"
            mae = "-" if o["mae"] is None else f"{o['mae']:.4f}"
            print(f"{model:<10} {mse:>8} {mae:>8} {o['failure_rate']:>6.1%} {o['n']:>5}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from agentnet.intents import IntentFormatError, load_intents
    from rapp_intent.predict import write_predictions

    settings = _settings(args)
    try:
        intents = load_intents(args.intents, args.split)
    except (OSError, IntentFormatError) as exc:
        print(f"rapp-intent predict: {exc}", file=sys.stderr)
        return 2
    _prepare_runtime(settings, quiet=True)
    summary = write_predictions(
        settings.models, intents, args.out, settings, progress=not args.no_progress
    )
    print(json.dumps(summary))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rapp-intent", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the gRPC IntentService until SIGTERM")
    p.add_argument("--host", help="bind address (RAPP_HOST)")
    p.add_argument("--port", type=int, help="gRPC port (RAPP_PORT; 0: any free port)")
    p.add_argument("--metrics-port", type=int, help="Prometheus port (RAPP_METRICS_PORT; 0: off)")
    p.add_argument("--models", type=_models, help="E-LAMs to load, e.g. minilm,smollm2")
    p.add_argument("--raw", action="store_true", help=_RAW_HELP)
    p.set_defaults(fn=cmd_serve)

    p = sub.add_parser("translate", help="translate one request and print the vector")
    p.add_argument("text", help="the request text")
    p.add_argument("--model", default="", help="E-LAM id (default: the default E-LAM)")
    p.add_argument("--app", default="", help="application id (content, qa, immersive, critical)")
    p.add_argument("--server", help="ask a running server at HOST:PORT instead of loading")
    p.add_argument("--timeout", type=float, default=30.0, help="deadline of --server calls (s)")
    p.add_argument(
        "--ca", type=Path, help="with --server: CA bundle (PEM) of its certificate (TLS)"
    )
    p.add_argument("--cert", type=Path, help="with --server: client certificate (mutual TLS)")
    p.add_argument("--key", type=Path, help="with --server: client private key (mutual TLS)")
    p.add_argument("--raw", action="store_true", help=_RAW_HELP)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(fn=cmd_translate)

    p = sub.add_parser(
        "eval",
        help="score E-LAMs and the even baseline on labelled intents",
        description=_EVAL_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data", type=Path, nargs="+", required=True, help="labelled intents (JSON Lines files)"
    )
    p.add_argument(
        "--split",
        choices=SPLITS,
        help="score only the records of this split (the project's data/intents files)",
    )
    p.add_argument("--models", type=_models, help="E-LAMs to score (default: RAPP_MODELS)")
    p.add_argument("--raw", action="store_true", help=_RAW_HELP)
    p.add_argument("--json", action="store_true", help="print the JSON object")
    p.set_defaults(fn=cmd_eval)

    p = sub.add_parser(
        "predict",
        help="write the E-LAMs' predictions of labelled intents to files (for SRL)",
    )
    p.add_argument(
        "--intents", type=Path, nargs="+", required=True, help="labelled intents (JSON Lines)"
    )
    p.add_argument("--split", choices=SPLITS, help="only the records of this split")
    p.add_argument("--models", type=_models, help="E-LAMs (default: RAPP_MODELS)")
    p.add_argument("--out", type=Path, required=True, help="directory of the <elam>.json files")
    p.add_argument("--raw", action="store_true", help=_RAW_HELP)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(fn=cmd_predict)

    from rapp_intent.iokd.cli import add_subcommands

    add_subcommands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
