"""Results tables of the docs, rendered from the JSON files the named commands write.

Each renderer takes the repository root and returns Markdown; the page states the
command that produced the file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

RENDERERS: dict[str, Callable[[Path], str]] = {}


def render(name: str, root: Path) -> str:
    """The table called ``name``.

    Raises:
        KeyError: no such table.
    """
    if name not in RENDERERS:
        raise KeyError(f"no results table {name!r}; known: {sorted(RENDERERS)}")
    return RENDERERS[name](root)


def _json(root: Path, path: str) -> dict:
    return json.loads((root / path).read_text())


def _f(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _elam_rows(root: Path, pattern: str) -> list[list[str]]:
    rows = []
    for card_path in sorted(root.glob(pattern)):
        card = json.loads(card_path.read_text())
        m = card.get("metrics") or {}
        rows.append(
            [
                f"`{card_path.parent.name}`",
                card.get("model", "—"),
                card.get("loss", "—"),
                _f(m.get("heldout_mse"), 4),
                _f(m.get("heldout_mae"), 4),
                _f(m.get("heldout_failure_rate"), 3),
                _f(m.get("dev_mse"), 4),
                _f(m.get("dev_mae"), 4),
                str(m.get("heldout_n", "—")),
            ]
        )
    if not rows:
        raise FileNotFoundError(f"no model cards match {pattern}")
    return rows


ELAM_HEADER = [
    "E-LAM", "family", "loss", "held-out MSE", "held-out MAE", "failures",
    "dev MSE", "dev MAE", "held-out n",
]  # fmt: skip


def elam_cards(root: Path) -> str:
    """The shipped E-LAMs' model cards (``models/elam/*/card.json``)."""
    return _table(ELAM_HEADER, _elam_rows(root, "models/elam/*/card.json"))


def elam_ablation(root: Path) -> str:
    """The IoKD ablation runs' model cards (``models/elam/ablation/*/card.json``)."""
    return _table(ELAM_HEADER, _elam_rows(root, "models/elam/ablation/*/card.json"))


def srl_eval(root: Path) -> str:
    """Policies and baselines on the dev intents (``models/policy/report/eval_dev_*``)."""
    data = _json(root, "models/policy/report/eval_dev_seeds101-110.json")
    rows = []
    for method, r in data.items():
        if method.startswith("_") or not isinstance(r, dict) or "normalized_score" not in r:
            continue
        share = ", ".join(f"{k} {v:.2f}" for k, v in (r.get("elam_share") or {}).items() if v)
        apps = r.get("per_app") or {}
        rows.append(
            [f"`{method}`", _f(r["normalized_score"]), _f(r.get("score")), _f(r.get("Q")),
             _f(r.get("L")), _f(r.get("P_outage")), _f(r.get("feasible"), 2), share or "—",
             *(_f(apps.get(a, {}).get("normalized_score")) for a in
               ("content", "qa", "immersive", "critical")),
             str(r.get("n", "—"))]
        )  # fmt: skip
    header = ["method", "normalised score", "score", "Q", "L", "P outage", "feasible",
              "E-LAM use", "content", "qa", "immersive", "critical", "n"]  # fmt: skip
    return _table(header, rows)


def negotiation_bench(root: Path) -> str:
    """MAESTRO's negotiation designs (``models/negotiation/report/bench_scripted.json``)."""
    data = _json(root, "models/negotiation/report/bench_scripted.json")
    rows = [
        [r["design"], str(r["agents"]), str(r["negotiations"]), _f(r["mae"]),
         _f(r.get("mae_sd")), f"{100 * r['mae_share_of_capacity']:.1f} %",
         _f(r.get("rounds_mean"), 2), _f(r.get("messages_per_round"), 1)]
        for r in data["results"]
    ]  # fmt: skip
    header = ["design", "agents", "negotiations", "MAE (req/s)", "MAE sd",
              "MAE / capacity", "rounds", "messages / round"]  # fmt: skip
    table = _table(header, rows)
    return f"{table}\n\nCapacity {data['capacity']:.2f} req/s; command: `{data['command']}`"


RENDERERS.update(
    {
        "elam-cards": elam_cards,
        "elam-ablation": elam_ablation,
        "srl-eval": srl_eval,
        "negotiation-bench": negotiation_bench,
    }
)
