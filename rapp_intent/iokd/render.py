"""Markdown of the IoKD report: Fig. 6 tables, targets, seed means, the IoKD section.

Everything here formats data made by :mod:`rapp_intent.iokd.fig6` and
:mod:`rapp_intent.iokd.fig7` (and the model cards); nothing is evaluated or read here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from agentnet.intents import APPS

SECTION_HEADING = "## IoKD: intent distillation"


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "-"
    return f"{x:.{digits}f}"


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


def seed_lines(means: list[dict[str, Any]]) -> list[str]:
    """One sentence per family of :func:`~rapp_intent.iokd.fig6.seed_means`."""
    lines = []
    for entry in means:
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


def difference_lines(differences: dict[str, dict[str, tuple[Any, Any]]]) -> list[str]:
    """One bullet per row of :func:`~rapp_intent.iokd.fig6.config_differences`."""
    return [
        f"- {label}: trained with "
        + ", ".join(f"{k} {own} (shipped: {shipped})" for k, (own, shipped) in diff.items())
        for label, diff in differences.items()
    ]


def target_lines(targets: list[dict[str, Any]]) -> list[str]:
    """The acceptance targets (:func:`~rapp_intent.iokd.fig6.targets`) as a table."""
    if not targets:
        return []
    lines = ["Targets on `dev_intents.jsonl`:", "", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['value']} | {'yes' if t['met'] else 'no'} |" for t in targets]
    return [*lines, ""]


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


INTRO = [
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
"""The section's fixed text: what IoKD is, the commands, the pipeline, the C-LAM."""

FIG6_CAPTION = (
    "Fig. 6 (precision of intent translation). DPO: the same configuration with a "
    'constant beta = beta_base. "eq. 31 only": the paper\'s loss without the auxiliary '
    "NLL term of `rapp_intent/iokd/loss.py` (the shipped artefacts add it: eq. 31 alone "
    "only ranks s_p above s_c and stops pulling the prediction onto s_p once the margin "
    "is large)."
)


def build_lines(build: dict[str, Any] | None) -> list[str]:
    """The dataset build's counts (``models/elam/data/build.json``), one bullet per app."""
    if not build:
        return []
    cot = build.get("cot", {})
    lines = [
        "Dataset build (`models/elam/data/build.json`):",
        "",
        f"- C-LAM `{build.get('clam')}`; chain-of-thought: {cot.get('by_clam', 0)} "
        f"explanations accepted from the C-LAM, {cot.get('by_rubric', 0)} rubric fallbacks",
    ]
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
    return [*lines, ""]


def fig7_lines(f7: dict[str, Any] | None, figures: str) -> list[str]:
    """Fig. 7: the plot's link and its points as a table."""
    if not f7:
        return []
    config = f7.get("config", {})
    frozen = (
        "" if config.get("encoder_lora_r") else ", frozen encoder: each point trains heads only"
    )
    lines = [
        f"Fig. 7 (MSE against the number of labelled training samples, `minilm` IoKD, "
        f"{config.get('ensemble', 1)} head(s) per point{frozen}): ![Fig. 7]({figures}/fig7.png)",
        "",
    ]
    sets = [k[: -len("_mse")] for k in f7["points"][0] if k.endswith("_mse")]
    lines += [
        "| labelled | synthetic | " + " | ".join(f"{s} MSE" for s in sets) + " |",
        "|---" * (2 + len(sets)) + "|",
    ]
    for p in f7["points"]:
        lines.append(
            f"| {p['labelled']} | {p['synthetic']} | "
            + " | ".join(_fmt(p[f"{s}_mse"], 5) for s in sets)
            + " |"
        )
    return [*lines, ""]


@dataclass(frozen=True)
class SectionData:
    """What the IoKD section shows, all of it computed before rendering.

    Attributes:
        fig6: the Fig. 6 data (``sets``, ``models``, ``seed_means``).
        fig7: the Fig. 7 data (None: no study).
        build: the dataset build report (None: not built here).
        cards: the shipped artefacts' cards with ``size_bytes``.
        differences: :func:`~rapp_intent.iokd.fig6.config_differences`.
        targets: :func:`~rapp_intent.iokd.fig6.targets`.
        figures: the figures' folder relative to the document (the plot's link).
    """

    fig6: dict[str, Any]
    fig7: dict[str, Any] | None = None
    build: dict[str, Any] | None = None
    cards: dict[str, dict[str, Any]] = field(default_factory=dict)
    differences: dict[str, dict[str, tuple[Any, Any]]] = field(default_factory=dict)
    targets: list[dict[str, Any]] = field(default_factory=list)
    figures: str = "models/elam/report"


def iokd_section(data: SectionData) -> str:
    """The IoKD section (Markdown) of the documentation, generated from the report's data."""
    models = data.fig6.get("models", {})
    lines = [SECTION_HEADING, "", *INTRO, *build_lines(data.build)]
    if data.cards:
        lines += ["Shipped artefacts (model cards: data sha256s, configuration, metrics):", ""]
        lines += [*artefact_lines(data.cards), ""]
    lines += [
        FIG6_CAPTION,
        *decoding_lines(models),
        *extra_lines(models),
        "",
        fig6_markdown(data.fig6),
    ]
    if data.differences:
        lines += ["Rows trained with another configuration than the shipped artefact:", ""]
        lines += [*difference_lines(data.differences), ""]
    lines += target_lines(data.targets)
    lines += seed_lines(data.fig6.get("seed_means", []))
    lines += fig7_lines(data.fig7, data.figures)
    return "\n".join(lines).rstrip() + "\n"
