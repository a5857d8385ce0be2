"""The paper's precision study: Fig. 6 as a table, Fig. 7 as a plot (section VI-B).

Fig. 6: MSE, MAE and failure rate of the even baseline [0.25]*4 and, for both E-LAM
families, the raw E-LAM, plain DPO (constant beta) and IoKD (per-sample beta, eq. 32),
per application and overall, on the project's held-out split and on
``dev_intents.jsonl`` (evaluation only). The variants trained with the paper's loss
alone (no auxiliary NLL term) are listed too when their artefacts exist.

Fig. 7: MSE of the ``minilm`` E-LAM distilled with IoKD against the number of labelled
training samples, with and without the synthetic samples made from them. The subsets are
nested, stratified by application and seeded; each point trains a fresh head (seconds
each, so the study runs in minutes).

A row whose artefact's model card already holds an evaluation of the same set (same
sha256 of the set's prompts, applications and labels, and the card's sha256 matching the
weights on disk) is taken from the card: ``rapp-intent distill`` evaluates every artefact
it writes through the rApp's own class, with the same code as here. ``fresh=True``
(``iokd-report --fresh``) re-evaluates everything.

Outputs (``models/elam/report/``): ``fig6.json``, ``fig6.md``, ``fig7.json``,
``fig7.png``, and the README section "## IoKD: intent distillation".
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import re
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from agentnet.intents import APPS, EVEN
from rapp_intent.evaluate import predict, report
from rapp_intent.iokd.data import Sample, heldout, load_evaluation, load_labelled

log = structlog.get_logger(__name__)

README_HEADING = "## IoKD: intent distillation"
README_AFTER = "## Intent rApp"
"""The IoKD section goes after this one when the README has it."""
FIG7_FRACTIONS = (0.125, 0.25, 0.5, 1.0)


@dataclass(frozen=True)
class Variant:
    """One row of Fig. 6: an E-LAM family in one form."""

    family: str
    name: str
    label: str
    path: Path | None  # None: the raw E-LAM
    # loss settings, seed and mean beta from the artefact's card (None: raw or unreadable)
    setup: dict[str, Any] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ReportConfig:
    """What the report evaluates and where it writes.

    Attributes:
        models_dir: ``models/elam`` (served artefacts and ``ablation/``).
        out_dir: where the figures go.
        dev: the dev set (None: held-out split only).
        readme: README to update (None: leave it).
        families: E-LAM families to evaluate.
        fig7: run the sample-size study.
        progress: progress bars.
        data_dir: the IoKD dataset (Fig. 7 and the build statistics).
        fresh: re-evaluate every artefact even when its card holds the evaluation.
        fig7_ensemble: heads per Fig. 7 point (1: a single head, the study's default;
            the shipped head may average more, see its card).
    """

    models_dir: Path
    out_dir: Path
    dev: Path | None
    readme: Path | None
    families: tuple[str, ...] = ("minilm", "smollm2")
    fig7: bool = True
    progress: bool = False
    data_dir: Path | None = None
    fresh: bool = False
    fig7_ensemble: int = 1


def set_digest(samples: Sequence[Sample]) -> str:
    """sha256 of an evaluation set's content: prompts, applications and labels, in order."""
    rows = [[s.prompt, s.app, [round(x, 6) for x in s.s]] for s in samples]
    return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()


def card_evaluation(
    path: Path, sets: dict[str, list[Sample]], decoding: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The evaluation stored in an artefact's card, if it covers exactly these sets.

    The card must name the sha256 of its weights, which must match the file on disk, and
    hold, for every set, a report whose ``sha256`` is the set's :func:`set_digest` and
    whose ``decoding`` equals ``decoding`` (the E-LAM's ``decoding_options`` as it would
    be loaded now; a report without the key counts as made with none).
    """
    from servicekit.integrity import sha256_file

    card_path = path / "card.json"
    if not card_path.exists():
        return None
    card = json.loads(card_path.read_text(encoding="utf-8"))
    weights = path / str(card.get("artefact", ""))
    if not card.get("sha256") or not weights.is_file() or sha256_file(weights) != card["sha256"]:
        return None
    stored = card.get("evaluation") or {}
    out = {}
    for name, samples in sets.items():
        rep = stored.get(name)
        if not rep or rep.get("sha256") != set_digest(samples):
            return None
        if (rep.get("decoding") or {}) != (decoding or {}):
            return None
        out[name] = {"overall": rep["overall"], "per_app": rep["per_app"]}
    return {"card": card, "reports": out}


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


def card_setup(path: Path) -> dict[str, Any] | None:
    """An artefact's loss settings, seed and mean beta, read once from its card."""
    try:
        card = json.loads((path / "card.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    training = card.get("training", {})
    cfg = training.get("config", {})
    loss = {"kind": card.get("loss", "iokd"), **cfg.get("loss", {})}
    return {**loss, "seed": cfg.get("seed", 0), "beta_mean": training.get("beta_mean")}


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


def load_variant(v: Variant, settings: Any, encoder: Any = None):
    """The E-LAM of a Fig. 6 row, through the rApp's own classes."""
    if v.family == "minilm":
        from rapp_intent.elam.encoder_torch import TorchEncoder
        from rapp_intent.elam.minilm import MiniLMELam

        return MiniLMELam(encoder or TorchEncoder(), head_dir=v.path)
    from rapp_intent.elam.smollm2 import SmolLM2ELam

    return SmolLM2ELam(
        settings.cache_dir,
        adapter_dir=v.path,
        max_new_tokens=settings.smollm2_max_new_tokens,
        decoding=settings.smollm2_decoding,
        beams=settings.smollm2_beams,
    )


def variant_decoding(v: Variant, settings: Any) -> dict[str, Any]:
    """The ``decoding_options`` the E-LAM of a Fig. 6 row has when loaded by :func:`load_variant`."""
    if v.family == "minilm":
        return {}
    from rapp_intent.elam.smollm2 import decoding_options

    return decoding_options(
        settings.smollm2_decoding, settings.smollm2_beams, settings.smollm2_max_new_tokens
    )


def evaluation_sets(dev: Path | None) -> dict[str, list[Sample]]:
    """The held-out split and, when present, the dev set."""
    sets = {"heldout": heldout(load_labelled())}
    if dev is not None:
        if dev.exists():
            sets["dev"] = load_evaluation(dev)
        else:
            log.warning("report.no_dev_set", path=str(dev))
    return sets


def fig6(config: ReportConfig, settings: Any) -> dict[str, Any]:
    """Evaluate every variant on every set: {set: {label: report}} plus the card info."""
    from tqdm.auto import tqdm

    sets = evaluation_sets(config.dev)
    result: dict[str, Any] = {
        name: {"even": report([EVEN] * len(s), s)} for name, s in sets.items()
    }
    info: dict[str, Any] = {"even": {"family": "-", "variant": "even"}}
    encoder = None
    for v in tqdm(
        variants(config.models_dir, config.families),
        desc="Fig. 6",
        disable=not config.progress,
        unit="model",
    ):
        stored = None
        if v.path is not None and not config.fresh:
            stored = card_evaluation(v.path, sets, variant_decoding(v, settings))
        if stored is not None:
            for name in sets:
                result[name][v.label] = stored["reports"][name]
            info[v.label] = {
                "family": v.family,
                "variant": v.name,
                "artefact": str(v.path),
                "sha256": stored["card"]["sha256"],
                "decoding": variant_decoding(v, settings),
                "evaluated": "card",
                "setup": v.setup,
            }
            continue
        if v.family == "minilm" and encoder is None:
            from rapp_intent.elam.encoder_torch import TorchEncoder

            encoder = TorchEncoder()
        start = time.perf_counter()
        elam = load_variant(v, settings, encoder)
        for name, samples in sets.items():
            result[name][v.label] = report(predict(elam, samples), samples)
        info[v.label] = {
            "family": v.family,
            "variant": v.name,
            "artefact": str(v.path) if v.path is not None else "raw",
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


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "-"
    return f"{x:.{digits}f}"


def decoding_lines(models: dict[str, Any]) -> list[str]:
    """A sentence naming how the generative rows were decoded (empty when none are)."""
    ways = sorted(
        {
            json.dumps(info["decoding"], sort_keys=True)
            for info in models.values()
            if info.get("decoding")
        }
    )
    if not ways:
        return []
    named = []
    for way in ways:
        d = json.loads(way)
        extra = ", ".join(f"{k} {v}" for k, v in d.items() if k != "decoding")
        named.append(f"`{d['decoding']}`" + (f" ({extra})" if extra else ""))
    return [
        "",
        "smollm2 rows decoded " + " and ".join(named) + " (`RAPP_SMOLLM2_DECODING`, "
        "`RAPP_SMOLLM2_BEAMS`; `expected` is the probability-weighted mean vector of the "
        "constrained beams, `constrained` the most likely beam).",
    ]


def fig6_markdown(data: dict[str, Any]) -> str:
    """Fig. 6 as Markdown tables, one per evaluation set."""
    lines = []
    for set_name, rows in data["sets"].items():
        n = next(iter(rows.values()))["overall"]["n"]
        lines.append(f"**{set_name}** ({n} requests): MSE per application, then overall")
        lines.append("")
        head = "| model | " + " | ".join(f"{a} MSE" for a in APPS)
        lines.append(head + " | MSE | MAE | failure rate |")
        lines.append("|---" * (len(APPS) + 4) + "|")
        for label, rep in rows.items():
            per = [_fmt(rep["per_app"].get(a, {}).get("mse")) for a in APPS]
            o = rep["overall"]
            lines.append(
                f"| {label} | "
                + " | ".join(per)
                + f" | {_fmt(o['mse'], 5)} | {_fmt(o['mae'])} | {o['failure_rate']:.1%} |"
            )
        lines.append("")
    return "\n".join(lines)


def _subset(samples: Sequence[Sample], fraction: float, seed: int = 0) -> list[Sample]:
    """Nested, app-stratified subset of the labelled samples and their synthetic children."""
    labelled = [s for s in samples if s.origin == "labelled"]
    chosen: set[str] = set()
    for app in APPS:
        ids = sorted(s.id for s in labelled if s.app == app)
        order = np.random.default_rng([seed, APPS.index(app)]).permutation(len(ids))
        chosen |= {ids[i] for i in order[: max(1, round(fraction * len(ids)))]}
    return [s for s in samples if s.id in chosen or s.source_id in chosen]


def fig7(config: ReportConfig, settings: Any) -> dict[str, Any]:
    """MSE of IoKD-distilled ``minilm`` against the number of labelled training samples."""
    from dataclasses import asdict, replace

    from tqdm.auto import tqdm

    from rapp_intent.elam.encoder_torch import TorchEncoder
    from rapp_intent.elam.minilm import MiniLMELam
    from rapp_intent.iokd.config import MinilmDistillConfig
    from rapp_intent.iokd.dataset import DATA_DIR, load_dataset
    from rapp_intent.iokd.distill_minilm import distill_minilm

    data = load_dataset(APPS, config.data_dir or DATA_DIR)
    sets = evaluation_sets(config.dev)
    raw = MiniLMELam(TorchEncoder())
    # The study trains heads on the frozen encoder: 8 encoder trainings of several
    # minutes each would not fit the report's budget. Its curve is the head-only one.
    study = replace(MinilmDistillConfig(), ensemble=config.fig7_ensemble, encoder_lora_r=0)
    points = []
    runs = [(f, aug) for f in FIG7_FRACTIONS for aug in (False, True)]
    for fraction, aug in tqdm(runs, desc="Fig. 7", disable=not config.progress, unit="run"):
        subset = _subset(data, fraction)
        if not aug:
            subset = [s for s in subset if s.origin != "synthetic"]
        head, _ = distill_minilm(raw, subset, study, Path(settings.cache_dir), progress=False)
        trained = MiniLMELam(raw.encoder)
        trained.head = head
        point = {
            "fraction": fraction,
            "augmented": aug,
            "labelled": sum(s.origin == "labelled" for s in {x.id: x for x in subset}.values()),
            "synthetic": sum(s.origin == "synthetic" for s in subset),
        }
        for name, samples in sets.items():
            point[f"{name}_mse"] = report(predict(trained, samples), samples)["overall"]["mse"]
        points.append(point)
    return {
        "points": points,
        "config": asdict(study),
        "note": "minilm heads on the frozen encoder (the shipped artefact also tunes "
        "encoder LoRA adapters), fig7_ensemble heads per point",
    }


def fig7_plot(data: dict[str, Any], path: Path) -> Path:
    """Fig. 7 as a PNG: MSE against labelled samples, with and without augmentation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=False)
    sets = [k[: -len("_mse")] for k in data["points"][0] if k.endswith("_mse")]
    for ax, set_name in zip(axes, sets + [None] * (2 - len(sets)), strict=False):
        if set_name is None:
            ax.axis("off")
            continue
        for aug, style in ((False, "o--"), (True, "s-")):
            pts = [p for p in data["points"] if p["augmented"] == aug]
            ax.plot(
                [p["labelled"] for p in pts],
                [p[f"{set_name}_mse"] for p in pts],
                style,
                label="with augmentation" if aug else "labelled only",
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("labelled training samples")
        ax.set_ylabel("MSE")
        ax.set_title(f"minilm IoKD, {set_name}")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _overall(data: dict[str, Any], set_name: str, label: str, key: str = "mse") -> float | None:
    rep = data["sets"].get(set_name, {}).get(label)
    if rep is None:
        return None
    value = rep["overall"][key]
    return None if value is None or value != value else float(value)


def targets(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets on the dev set, each with its numbers and whether it is met."""
    s = "dev"
    out = []
    even = _overall(data, s, "even")
    iokd_m = _overall(data, s, "minilm IoKD")
    if even is not None and iokd_m is not None:
        out.append(
            {
                "target": "IoKD minilm MSE <= 40% of the even baseline's",
                "value": f"{iokd_m:.5f} = {iokd_m / even:.0%} of {even:.5f}",
                "met": iokd_m <= 0.4 * even,
            }
        )
    for fam in ("minilm", "smollm2"):
        a, b = _overall(data, s, f"{fam} IoKD"), _overall(data, s, f"{fam} DPO")
        if a is not None and b is not None:
            out.append(
                {
                    "target": f"IoKD better than plain DPO ({fam})",
                    "value": f"MSE {a:.5f} vs {b:.5f}",
                    "met": a < b,
                }
            )
    # The same comparison over every seed both losses were trained with (one seed's gap can
    # be smaller than the seed-to-seed spread): met when IoKD's mean MSE is lower by more
    # than one standard error of the seed-paired difference.
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
                "met": m["dpo"] - m["iokd"] > m["paired_diff_se"],
            }
        )
    fail = _overall(data, s, "smollm2 IoKD", "failure_rate")
    if fail is not None:
        out.append(
            {
                "target": "distilled smollm2 failure rate <= 2%",
                "value": f"{fail:.1%}",
                "met": fail <= 0.02,
            }
        )
    a, b = _overall(data, s, "smollm2 IoKD"), _overall(data, s, "smollm2 raw")
    if a is not None and b is not None:
        out.append(
            {
                "target": "distilled smollm2 MSE below the raw model's",
                "value": f"{a:.5f} vs {b:.5f}",
                "met": a < b,
            }
        )
    return out


def artefact_lines(cards: dict[str, dict[str, Any]]) -> list[str]:
    """One Markdown bullet per shipped artefact: size, training configuration and time."""
    lines = []
    for fam, card in cards.items():
        train = card.get("training", {})
        cfg = train.get("config", {})
        loss = cfg.get("loss", {})
        size = card.get("size_bytes")
        what = (
            f"loss `{loss.get('kind')}` (beta_base {loss.get('beta_base')}, lambda "
            f"{loss.get('lam')}, auxiliary NLL weight {loss.get('nll_weight')})"
        )
        if fam == "minilm" and card.get("encoder_adapter"):
            ad = card["encoder_adapter"]
            what += (
                f"; LoRA r={ad.get('r')} on the encoder's {', '.join(ad.get('targets', []))} "
                f"layers ({ad.get('parameters')} parameters) trained with one head "
                f"({cfg.get('hidden')} hidden units), {train.get('best_epoch')} epochs (chosen "
                f"on a validation part of the train split, trained on the other "
                f"{train.get('trained_on')} samples), {train.get('pairs')} pairs"
            )
        elif fam == "minilm":
            k = cfg.get("ensemble", 1)
            heads = f"{k} heads averaged into one" if k > 1 else "one head"
            what += (
                f"; {heads} ({cfg.get('hidden')} hidden units each), {train.get('epochs')} "
                f"epochs (chosen on a validation part of the train split), "
                f"{train.get('pairs')} pairs"
            )
        else:
            what += (
                f"; LoRA r={cfg.get('lora_r')} on the top {cfg.get('lora_layers')} layers, "
                f"{train.get('steps_done')} steps of {cfg.get('batch_items')} prompts x "
                f"{cfg.get('contrastive_per_item')} contrastive answers, lr {cfg.get('lr')}"
            )
        secs = train.get("train_seconds")
        lines.append(
            f"- `{fam}`: `models/elam/{fam}/`"
            + (f", {size / 2**20:.1f} MB" if size else "")
            + f"; {what}"
            + (f"; trained in {secs / 60:.1f} min on this machine (2 CPU cores)" if secs else "")
            + f"; weights sha256 `{str(card.get('sha256', ''))[:12]}...`"
        )
    return lines


def config_notes(info: dict[str, Any], models_dir: Path) -> list[str]:
    """Rows whose training configuration differs from the shipped IoKD artefact's beyond
    the loss (e.g. an ablation kept from an earlier configuration), one line each."""

    def config(path: Path) -> dict[str, Any] | None:
        card_path = Path(path) / "card.json"
        if not card_path.exists():
            return None
        cfg = json.loads(card_path.read_text(encoding="utf-8")).get("training", {})
        out = {k: v for k, v in cfg.get("config", {}).items() if k not in ("loss", "seed")}
        return {"ensemble": 1, **out} if "epochs" in out else out  # minilm before ensembles

    lines = []
    for label, row in info.items():
        if row.get("variant") in (None, "even", "raw", "iokd") or not row.get("artefact"):
            continue
        shipped, own = config(models_dir / row["family"]), config(Path(row["artefact"]))
        if shipped is None or own is None or own == shipped:
            continue
        diff = ", ".join(
            f"{k} {own.get(k)} (shipped: {shipped.get(k)})"
            for k in sorted(set(own) | set(shipped))
            if own.get(k) != shipped.get(k)
        )
        lines.append(f"- {label}: trained with {diff}")
    return lines


def extra_lines(models: dict[str, Any]) -> list[str]:
    """What the further ablation rows (``models/elam/ablation/<family>-<name>/``) are."""
    if not any(str(r.get("variant", "")).startswith("extra:") for r in models.values()):
        return []
    return [
        "",
        "Rows with settings in brackets are further ablations kept in "
        "`models/elam/ablation/`: the same configuration as the row's shipped artefact "
        "except the loss settings or seed named, with the mean per-sample beta over the "
        "training items (eq. 32; plain DPO: beta_base). The single-seed targets compare "
        'the shipped IoKD artefact with the plain DPO row; the rows "mean of N seeds" '
        "compare the two losses over every seed both were trained with, paired by seed, and "
        "count as met only when IoKD is ahead by more than one standard error.",
    ]


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
                kind: [_overall(f6, set_name, by_kind[kind][sd]) for sd in seeds]
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


def seed_lines(f6: dict[str, Any]) -> list[str]:
    """One sentence per family for :func:`seed_means`."""
    lines = []
    for entry in seed_means(f6):
        per_set = "; ".join(
            f"{name}: IoKD {m['iokd']:.5f} vs DPO {m['dpo']:.5f} (difference "
            f"{m['dpo'] - m['iokd']:+.5f}; between seeds IoKD moves {m['iokd_range']:.5f}, "
            f"DPO {m['dpo_range']:.5f}; paired by seed, IoKD lower in {m['iokd_wins']} of "
            f"{len(entry['seeds'])}, standard error of the difference {m['paired_diff_se']:.5f})"
            for name, m in entry["mse"].items()
        )
        seeds = ", ".join(str(s) for s in entry["seeds"])
        lines += [
            f"Mean MSE over seeds {seeds} (`{entry['family']}`, the shipped configuration "
            f"otherwise): {per_set}.",
            "",
        ]
    return lines


def readme_section(
    f6: dict[str, Any],
    f7: dict[str, Any] | None,
    build: dict[str, Any] | None,
    out_rel: str,
    cards: dict[str, dict[str, Any]] | None = None,
    models_dir: Path | None = None,
) -> str:
    """The README section (Markdown), generated from the report's numbers."""
    lines = [
        README_HEADING,
        "",
        "IoKD (paper section IV) distils intent understanding into the two E-LAM families. "
        "Generated by `rapp-intent iokd-report` from the shipped artefacts; numbers below are "
        "measured, not copied.",
        "",
        "```",
        "rapp-intent iokd-dataset --clam local          # D_IoKD (eqs. 19-26) -> models/elam/data/",
        "rapp-intent distill --model minilm             # IoKD head + encoder LoRA -> models/elam/minilm/",
        "rapp-intent distill --model smollm2            # IoKD LoRA -> models/elam/smollm2/",
        "rapp-intent distill --model minilm --loss dpo  # ablation -> models/elam/ablation/minilm-dpo/",
        "rapp-intent iokd-report                        # this section, models/elam/report/",
        "```",
        "",
        "Pipeline: D_h = `train` split of all applications, D_u = `train` split of the "
        "target one (eq. 19); SBERT (all-MiniLM-L6-v2) filtering at tau_min (eq. 20); "
        "chain-of-thought reasons from the C-LAM (eq. 22); augmentation with a quality loop "
        "(eq. 23: every candidate checked for a valid vector, rubric- and source-consistent "
        "label, no near-duplicate, not off-topic; rejected ones regenerated with the reason "
        "fed back); top-k contrastive vectors by angular distance (eqs. 24, 25); JSON Lines "
        "(eq. 26). Distillation: eq. 31 with per-sample beta (eq. 32), reference = the raw "
        "E-LAM; `minilm` trains LoRA adapters of its encoder together with its Dirichlet "
        "head (`--encoder-lora-r 0`: the head alone on cached embeddings), `smollm2` LoRA "
        "adapters (token-level DPO on the vector's text, short prompt without "
        "demonstrations). The held-out split and `dev_intents.jsonl` are never used for "
        "construction, training, demonstrations or tuning (epochs are chosen on a "
        "validation part of the train split).",
        "",
        "About the C-LAM: offline the C-LAM is SmolLM2-135M-Instruct (`--clam local`). A "
        "135 M model cannot label intents: the labels of its synthetic samples are those of "
        "the labelled requests it rewrites, its explanations mostly fail the checks (the "
        "rubric's reading of the vector is kept instead, counted below), and most of its "
        "rewrites are rejected. The same pipeline runs unchanged against a large model "
        "through any OpenAI-compatible endpoint (`--clam openai`, `RAPP_CLAM_BASE_URL`, "
        "`RAPP_CLAM_MODEL`, `RAPP_CLAM_API_KEY`), which then also labels (`labels=clam`).",
        "",
    ]
    if build:
        lines += ["Dataset build (`models/elam/data/build.json`):", ""]
        cot = build.get("cot", {})
        lines.append(
            f"- C-LAM `{build.get('clam')}`; chain-of-thought: {cot.get('by_clam', 0)} "
            f"explanations accepted from the C-LAM, {cot.get('by_rubric', 0)} rubric fallbacks"
        )
        for app, rep in build.get("apps", {}).items():
            aug = rep.get("augmentation", {})
            rounds = "; ".join(
                f"round {r['round']}: {r['accepted']} accepted / {r['rejected']} rejected"
                for r in aug.get("rounds", [])
            )
            lines.append(
                f"- {app}: |D_u| = {rep['d_u']}, |D_rel| = {rep['d_rel']}, "
                f"synthetic asked {aug.get('requested', 0)}, accepted {aug.get('accepted', 0)} "
                f"({rounds}); |D_IoKD| = {rep.get('d_iokd')}"
            )
        lines.append("")
    if cards:
        lines += ["Shipped artefacts (model cards: data sha256s, configuration, metrics):", ""]
        lines += artefact_lines(cards)
        lines.append("")
    lines += [
        "Fig. 6 (precision of intent translation). DPO: the same configuration with a "
        'constant beta = beta_base. "eq. 31 only": the paper\'s loss without the auxiliary '
        "NLL term of `rapp_intent/iokd/loss.py` (the shipped artefacts add it: eq. 31 alone "
        "only ranks s_p above s_c and stops pulling the prediction onto s_p once the margin "
        "is large).",
        *decoding_lines(f6.get("models", {})),
        *extra_lines(f6.get("models", {})),
        "",
        fig6_markdown(f6),
    ]
    notes = config_notes(f6.get("models", {}), models_dir) if models_dir else []
    if notes:
        lines += ["Rows trained with another configuration than the shipped artefact:", ""]
        lines += [*notes, ""]
    tgt = targets(f6)
    if tgt:
        lines += ["Targets on `dev_intents.jsonl`:", ""]
        lines += ["| target | measured | met |", "|---|---|---|"]
        lines += [f"| {t['target']} | {t['value']} | {'yes' if t['met'] else 'no'} |" for t in tgt]
        lines.append("")
    lines += seed_lines(f6)
    if f7:
        lines += [
            f"Fig. 7 (MSE against the number of labelled training samples, `minilm` IoKD, "
            f"{f7.get('config', {}).get('ensemble', 1)} head(s) per point"
            + (
                ", frozen encoder: each point trains heads only"
                if not f7.get("config", {}).get("encoder_lora_r")
                else ""
            )
            + "): "
            f"![Fig. 7]({out_rel}/fig7.png)",
            "",
        ]
        sets = [k[: -len("_mse")] for k in f7["points"][0] if k.endswith("_mse")]
        head = "| labelled | synthetic | " + " | ".join(f"{s} MSE" for s in sets) + " |"
        lines += [head, "|---" * (2 + len(sets)) + "|"]
        for p in f7["points"]:
            lines.append(
                f"| {p['labelled']} | {p['synthetic']} | "
                + " | ".join(_fmt(p[f"{s}_mse"], 5) for s in sets)
                + " |"
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _section(heading: str) -> re.Pattern[str]:
    """A level-2 section whose heading starts with ``heading``, up to the next one or the end."""
    return re.compile(rf"^{re.escape(heading)}[^\n]*(?:\n|\Z).*?(?=^## |\Z)", re.M | re.S)


def update_readme(path: Path, section: str) -> None:
    """Write the IoKD section into a README, leaving every other section as it is.

    An existing IoKD section is replaced in place. Otherwise the section goes right after
    the ``## Intent rApp`` section when there is one, else at the end.
    """
    section = section.rstrip("\n") + "\n"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    own = _section(README_HEADING)
    anchor = _section(README_AFTER).search(text)
    if own.search(text):
        text = own.sub(lambda _: section + "\n", text, count=1)
    elif anchor is not None:
        before, after = text[: anchor.end()].rstrip("\n"), text[anchor.end() :]
        text = before + "\n\n" + section + ("\n" + after if after else "")
    else:
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + section
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


def make_report(config: ReportConfig, settings: Any) -> dict[str, Any]:
    """Run Fig. 6 and Fig. 7 and write every output."""
    from rapp_intent.iokd.dataset import BUILD_FILE, DATA_DIR

    out = config.out_dir
    out.mkdir(parents=True, exist_ok=True)
    f6 = fig6(config, settings)
    f6["seed_means"] = seed_means(f6)
    (out / "fig6.json").write_text(json.dumps(f6, indent=2) + "\n", encoding="utf-8")
    (out / "fig6.md").write_text(fig6_markdown(f6), encoding="utf-8")
    f7 = None
    if config.fig7 and "minilm" in config.families:
        f7 = fig7(config, settings)
        (out / "fig7.json").write_text(json.dumps(f7, indent=2) + "\n", encoding="utf-8")
        fig7_plot(f7, out / "fig7.png")
    elif (out / "fig7.json").exists():  # --no-fig7: keep the last study in the README
        f7 = json.loads((out / "fig7.json").read_text(encoding="utf-8"))
    build_path = Path(config.data_dir or DATA_DIR) / BUILD_FILE
    build = json.loads(build_path.read_text(encoding="utf-8")) if build_path.exists() else None
    cards = {}
    for fam in config.families:
        card_path = config.models_dir / fam / "card.json"
        if card_path.exists():
            card = json.loads(card_path.read_text(encoding="utf-8"))
            card["size_bytes"] = sum(
                f.stat().st_size for f in (config.models_dir / fam).iterdir() if f.is_file()
            )
            cards[fam] = card
    if config.readme is not None:
        try:
            rel = str(out.resolve().relative_to(config.readme.resolve().parent))
        except ValueError:
            rel = str(out)
        section = readme_section(f6, f7, build, rel, cards, config.models_dir)
        update_readme(config.readme, section)
    summary = {
        s: {label: rep["overall"] for label, rep in rows.items()} for s, rows in f6["sets"].items()
    }
    return {"fig6": f6, "fig7": f7, "fig6_summary": {"overall": summary, "targets": targets(f6)}}
