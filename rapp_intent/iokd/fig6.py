"""The paper's Fig. 6 as data: precision of every E-LAM form on the evaluation sets.

MSE, MAE and failure rate of the even baseline [0.25]*4 and, for both E-LAM families,
the raw E-LAM, plain DPO (constant beta) and IoKD (per-sample beta, eq. 32), per
application and overall, on the project's held-out split and on ``dev_intents.jsonl``
(evaluation only). The variants trained with the paper's loss alone (no auxiliary NLL
term) and further ablations in ``models/elam/ablation/`` are rows too when their
artefacts exist. A row whose card holds an evaluation of the same sets is taken from the
card (:mod:`rapp_intent.iokd.cards`).

:func:`seed_means` compares IoKD with plain DPO over every seed both were trained with;
:func:`targets` checks the acceptance targets of IoKD (constants below) on the dev set.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from tqdm.auto import tqdm

from agentnet.intents import EVEN
from rapp_intent.elam.base import ELam
from rapp_intent.elam.encoder_torch import TorchEncoder
from rapp_intent.elam.minilm import MiniLMELam
from rapp_intent.elam.registry import load_smollm2
from rapp_intent.elam.smollm2 import decoding_options
from rapp_intent.evaluate import predict, report
from rapp_intent.iokd.cards import card_evaluation, card_setup, read_card
from rapp_intent.iokd.data import Sample
from rapp_intent.settings import RappSettings

log = structlog.get_logger(__name__)

TARGET_SET = "dev"
"""The evaluation set the acceptance targets are checked on."""
MINILM_MSE_SHARE_OF_EVEN = 0.40
"""Target: the IoKD-distilled ``minilm``'s MSE is at most this share of the even
baseline's (the constant [0.25]*4)."""
SMOLLM2_MAX_FAILURE_RATE = 0.02
"""Target: the distilled ``smollm2`` fails to produce a valid vector for at most this share
of the requests (its MSE must also be below the raw model's)."""
SEED_MEAN_MARGIN_SE = 1.0
"""Target per family: IoKD is better than plain DPO. Over several seeds it counts as met
when IoKD's mean MSE is lower by more than this many standard errors of the seed-paired
difference (one seed's gap can be smaller than the seed-to-seed spread)."""


@dataclass(frozen=True)
class Variant:
    """One row of Fig. 6: an E-LAM family in one form."""

    family: str
    name: str
    label: str
    path: Path | None  # None: the raw E-LAM
    # loss settings, seed and mean beta from the artefact's card (None: raw or unreadable)
    setup: dict[str, Any] | None = field(default=None, compare=False)


def variants(models_dir: Path, families: Sequence[str]) -> list[Variant]:
    """The Fig. 6 rows whose artefacts exist (raw forms always do)."""
    out = []
    for fam in families:
        rows = [
            (fam, "raw", f"{fam} raw", None),
            (fam, "dpo", f"{fam} DPO", models_dir / "ablation" / f"{fam}-dpo"),
            (fam, "iokd", f"{fam} IoKD", models_dir / fam),
            (
                fam,
                "dpo-nll0",
                f"{fam} DPO, eq. 31 only",
                models_dir / "ablation" / f"{fam}-dpo-nll0",
            ),
            (
                fam,
                "iokd-nll0",
                f"{fam} IoKD, eq. 31 only",
                models_dir / "ablation" / f"{fam}-iokd-nll0",
            ),
        ]
        for family, name, label, path in rows:
            if path is None:
                out.append(Variant(family, name, label, path))
            elif (path / "card.json").exists():
                out.append(Variant(family, name, label, path, card_setup(path)))
            else:
                log.warning("report.missing_artefact", variant=label, path=str(path))
        shipped = next((v.setup for v in out if v.family == fam and v.name == "iokd"), None)
        known = {p.name for _, _, _, p in rows if p is not None}
        for path in sorted((models_dir / "ablation").glob(f"{fam}-*")):
            if path.name in known or not (path / "card.json").exists():
                continue
            if shipped is None:
                log.warning("report.ablation_without_shipped", path=str(path), family=fam)
                continue
            setup = card_setup(path)
            if setup is None:
                log.warning("report.unreadable_card", path=str(path))
                continue
            label = extra_label(fam, path.name, setup, shipped)
            out.append(Variant(fam, f"extra:{path.name}", label, path, setup))
    return out


def extra_label(fam: str, name: str, own: dict[str, Any], shipped: dict[str, Any]) -> str:
    """The Fig. 6 label of a further ablation artefact (``ablation/<fam>-<name>``): its
    loss, then how its loss settings or seed differ from the shipped artefact's, and its
    mean beta."""
    kind = own["kind"]
    parts = [
        f"{k} {own.get(k)}"
        for k in ("beta_base", "lam", "nll_weight", "seed")
        if own.get(k) != shipped.get(k) and not (kind == "dpo" and k == "lam")
    ]
    if own.get("beta_mean") is not None:
        parts.append(f"mean beta {own['beta_mean']:.3f}")
    return f"{fam} {'IoKD' if kind == 'iokd' else 'DPO'}" + (
        f" ({', '.join(parts)})" if parts else f" ({name})"
    )


def load_variant(v: Variant, settings: RappSettings, encoder: TorchEncoder | None = None) -> ELam:
    """The E-LAM of a Fig. 6 row, through the rApp's own classes (minilm on torch, fp32)."""
    if v.family == "minilm":
        return MiniLMELam(encoder or TorchEncoder(), head_dir=v.path)
    return load_smollm2(settings, v.path)


def variant_decoding(v: Variant, settings: RappSettings) -> dict[str, Any]:
    """The ``decoding_options`` the E-LAM of a Fig. 6 row has when loaded by :func:`load_variant`."""
    if v.family == "minilm":
        return {}
    return decoding_options(
        settings.smollm2_decoding, settings.smollm2_beams, settings.smollm2_max_new_tokens
    )


def fig6(
    models_dir: Path,
    families: Sequence[str],
    sets: dict[str, list[Sample]],
    settings: RappSettings,
    *,
    fresh: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate every variant on every set: {set: {label: report}} plus the rows' info.

    Args:
        models_dir: ``models/elam`` (served artefacts and ``ablation/``).
        families: E-LAM families to evaluate.
        sets: the evaluation sets by name (:func:`~rapp_intent.iokd.cards.evaluation_sets`).
        settings: the rApp's settings (cache, smollm2 decoding).
        fresh: re-evaluate every artefact even when its card holds the evaluation.
        progress: a progress bar over the rows.
    """
    result: dict[str, Any] = {
        name: {"even": report([EVEN] * len(s), s)} for name, s in sets.items()
    }
    info: dict[str, Any] = {"even": {"family": "-", "variant": "even"}}
    encoder = None
    rows = variants(models_dir, families)
    for v in tqdm(rows, desc="Fig. 6", disable=not progress, unit="model"):
        stored = None
        if v.path is not None and not fresh:
            stored = card_evaluation(v.path, sets, variant_decoding(v, settings))
        if stored is not None:
            for name in sets:
                result[name][v.label] = stored["reports"][name]
            info[v.label] = {
                "family": v.family,
                "variant": v.name,
                "artefact": _relative(v.path, models_dir),
                "sha256": stored["card"]["sha256"],
                "decoding": variant_decoding(v, settings),
                "evaluated": "card",
                "setup": v.setup,
            }
            continue
        if v.family == "minilm" and encoder is None:
            encoder = TorchEncoder()
        start = time.perf_counter()
        elam = load_variant(v, settings, encoder)
        for name, samples in sets.items():
            result[name][v.label] = report(predict(elam, samples), samples)
        info[v.label] = {
            "family": v.family,
            "variant": v.name,
            "artefact": _relative(v.path, models_dir) if v.path is not None else "raw",
            "sha256": elam.artefact,
            "parameters": elam.n_parameters,
            "decoding": dict(elam.decoding_options),
            "evaluated": "loaded",
            "eval_seconds": round(time.perf_counter() - start, 1),
            "setup": v.setup,
        }
        del elam
        gc.collect()
    return {"sets": result, "models": info}


def overall(data: dict[str, Any], set_name: str, label: str, key: str = "mse") -> float | None:
    """A row's overall ``key`` on one set (None: no such row, or no number)."""
    rep = data["sets"].get(set_name, {}).get(label)
    if rep is None:
        return None
    value = rep["overall"][key]
    return None if value is None or value != value else float(value)


def seed_means(f6: dict[str, Any]) -> list[dict[str, Any]]:
    """IoKD against plain DPO averaged over the seeds both were trained with.

    A row counts as a seed of a family's IoKD (or DPO) when its loss settings (``setup``,
    from its card) equal those of the family's ``IoKD`` (``DPO``) row and only the seed
    differs. One entry per family with at least two common seeds: the seeds and, per
    evaluation set, the mean MSE of each loss, its range over the seeds, and the paired
    comparison (DPO minus IoKD per seed, its standard error, how many seeds IoKD wins)."""
    models = f6.get("models", {})
    out = []
    for fam in sorted({r.get("family") for r in models.values()} - {"-", None}):
        setups = {
            label: row["setup"]
            for label, row in models.items()
            if row.get("family") == fam and row.get("setup")
        }
        by_kind: dict[str, dict[int, str]] = {}
        for kind, ref_label in (("iokd", f"{fam} IoKD"), ("dpo", f"{fam} DPO")):
            ref = setups.get(ref_label)
            if ref is None:
                continue
            keys = ("kind", "beta_base", "nll_weight") + (("lam",) if kind == "iokd" else ())
            by_kind[kind] = {
                int(setup["seed"]): label
                for label, setup in setups.items()
                if all(setup.get(k) == ref.get(k) for k in keys)
            }
        seeds = sorted(set(by_kind.get("iokd", {})) & set(by_kind.get("dpo", {})))
        if len(seeds) < 2:
            continue
        means = {}
        for set_name in f6.get("sets", {}):
            vals = {
                kind: [overall(f6, set_name, by_kind[kind][sd]) for sd in seeds]
                for kind in ("iokd", "dpo")
            }
            if all(v is not None for vs in vals.values() for v in vs):
                m = {k: statistics.fmean(vs) for k, vs in vals.items()}
                m |= {f"{k}_range": max(vs) - min(vs) for k, vs in vals.items()}
                # Paired by seed (same seed: same initialisation and data order).
                diffs = [d - i for i, d in zip(vals["iokd"], vals["dpo"], strict=True)]
                m |= {
                    "paired_diff": diffs,
                    "paired_diff_se": statistics.stdev(diffs) / math.sqrt(len(diffs)),
                    "iokd_wins": sum(x > 0 for x in diffs),
                }
                means[set_name] = m
        out.append({"family": fam, "seeds": seeds, "mse": means})
    return out


def targets(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The acceptance targets of IoKD on :data:`TARGET_SET`: each with its numbers and
    whether it is met (a target whose rows are missing is left out)."""
    s = TARGET_SET
    out = []
    even = overall(data, s, "even")
    iokd_m = overall(data, s, "minilm IoKD")
    if even is not None and iokd_m is not None:
        out.append(
            {
                "target": f"IoKD minilm MSE <= {MINILM_MSE_SHARE_OF_EVEN:.0%} of the even "
                "baseline's",
                "value": f"{iokd_m:.5f} = {iokd_m / even:.0%} of {even:.5f}",
                "met": iokd_m <= MINILM_MSE_SHARE_OF_EVEN * even,
            }
        )
    for fam in ("minilm", "smollm2"):
        a, b = overall(data, s, f"{fam} IoKD"), overall(data, s, f"{fam} DPO")
        if a is not None and b is not None:
            out.append(
                {
                    "target": f"IoKD better than plain DPO ({fam})",
                    "value": f"MSE {a:.5f} vs {b:.5f}",
                    "met": a < b,
                }
            )
    # The same comparison over every seed both losses were trained with.
    for entry in seed_means(data):
        m = entry["mse"].get(s)
        if m is None:
            continue
        n = len(entry["seeds"])
        out.append(
            {
                "target": f"IoKD better than plain DPO ({entry['family']}, mean of {n} seeds)",
                "value": f"MSE {m['iokd']:.5f} vs {m['dpo']:.5f} (DPO - IoKD "
                f"{m['dpo'] - m['iokd']:+.5f} +- {m['paired_diff_se']:.5f}); IoKD lower in "
                f"{m['iokd_wins']} of {n} seeds",
                "met": m["dpo"] - m["iokd"] > SEED_MEAN_MARGIN_SE * m["paired_diff_se"],
            }
        )
    fail = overall(data, s, "smollm2 IoKD", "failure_rate")
    if fail is not None:
        out.append(
            {
                "target": f"distilled smollm2 failure rate <= {SMOLLM2_MAX_FAILURE_RATE:.0%}",
                "value": f"{fail:.1%}",
                "met": fail <= SMOLLM2_MAX_FAILURE_RATE,
            }
        )
    a, b = overall(data, s, "smollm2 IoKD"), overall(data, s, "smollm2 raw")
    if a is not None and b is not None:
        out.append(
            {
                "target": "distilled smollm2 MSE below the raw model's",
                "value": f"{a:.5f} vs {b:.5f}",
                "met": a < b,
            }
        )
    return out


def _training_config(folder: Path) -> dict[str, Any] | None:
    """A card's training configuration besides the loss and the seed."""
    card = read_card(folder)
    if card is None:
        return None
    cfg = card.get("training", {}).get("config", {})
    out = {k: v for k, v in cfg.items() if k not in ("loss", "seed")}
    # A minilm card without ``ensemble`` trained a single head.
    return {"ensemble": 1, **out} if "epochs" in out else out


def _relative(path: Path, models_dir: Path) -> str:
    """``path`` relative to ``models_dir`` when it lies inside, so the report names the
    same folder on every checkout."""
    try:
        return Path(path).resolve().relative_to(Path(models_dir).resolve()).as_posix()
    except ValueError:
        return str(path)


def config_differences(info: dict[str, Any], models_dir: Path) -> dict[str, dict[str, Any]]:
    """Rows whose training configuration differs from the shipped IoKD artefact's beyond
    the loss and the seed: label -> {setting: (the row's value, the shipped value)}."""
    out = {}
    for label, row in info.items():
        if row.get("variant") in (None, "even", "raw", "iokd") or not row.get("artefact"):
            continue
        shipped = _training_config(models_dir / row["family"])
        own = _training_config(models_dir / row["artefact"])
        if shipped is None or own is None or own == shipped:
            continue
        out[label] = {
            k: (own.get(k), shipped.get(k))
            for k in sorted(set(own) | set(shipped))
            if own.get(k) != shipped.get(k)
        }
    return out


def shipped_cards(models_dir: Path, families: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The cards of the served artefacts, each with the folder's size (``size_bytes``)."""
    cards = {}
    for fam in families:
        card = read_card(models_dir / fam)
        if card is not None:
            card["size_bytes"] = sum(
                f.stat().st_size for f in (models_dir / fam).iterdir() if f.is_file()
            )
            cards[fam] = card
    return cards
