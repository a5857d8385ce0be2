"""Results tables of the docs, rendered from the JSON files the named commands write.

Each renderer takes the repository root and returns Markdown; the page states the
command that produced the file.
"""

from __future__ import annotations

import json
import statistics
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


def srl_eval(root: Path, seeds: str = "101-110") -> str:
    """Policies and baselines on the dev intents (``models/policy/report/eval_dev_*``)."""
    data = _json(root, f"models/policy/report/eval_dev_seeds{seeds}.json")
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


def _own_share(counts: dict[str, int]) -> float:
    """Share of a role's decisions whose value is the negotiator's own (LLM or scripted)."""
    total = sum(counts.values())
    return (counts.get("llm", 0) + counts.get("scripted", 0)) / total if total else 0.0


def negotiation_bench(root: Path, run: str = "scripted") -> str:
    """MAESTRO's negotiation designs (``models/negotiation/report/bench_<run>.json``)."""
    data = _json(root, f"models/negotiation/report/bench_{run}.json")
    rows = [
        [r["design"], str(r["agents"]), str(r["negotiations"]), _f(r["mae"]),
         _f(r.get("mae_sd")), f"{100 * r['mae_share_of_capacity']:.2f} %",
         _f(r.get("rounds_mean"), 2), _f(r.get("messages_per_round"), 1),
         f"{100 * r['fallback_share']:.0f} %",
         f"{100 * _own_share(r['sources'].get('tenant', {})):.0f} %",
         f"{100 * _own_share(r['sources'].get('mediator', {})):.0f} %",
         f"{100 * r['consensus_share']:.0f} %"]
        for r in data["results"]
    ]  # fmt: skip
    header = ["design", "agents", "negotiations", "MAE (req/s)", "MAE sd",
              "MAE / capacity", "rounds", "messages / round", "fallbacks",
              "tenants' own values", "mediator's own values", "consensus"]  # fmt: skip
    table = _table(header, rows)
    paper = data["paper_no_optimizer"]
    return (
        f"{table}\n\nNegotiator `{data['llm']}`; capacity {data['capacity']:.2f} req/s. "
        f"Own values: decisions whose value is the negotiator's, neither imposed by the "
        f"optimizer nor a fallback of the validation unit. Paper, no optimizer: MAE "
        f"{paper['mae_mbps']:.0f} ± {paper['sd_mbps']:.0f} Mbps of a {paper['cell_mbps']:.0f} "
        f"Mbps cell ({100 * paper['mae_share_of_capacity']:.1f} %). Command: "
        f"`{data['command']}`"
    )


PERSONALITY_NAMES = {"N": "normal", "A": "agreeable", "D": "disagreeable", "V": "vulnerable",
                     "T": "toxic"}  # fmt: skip


def negotiation_personalities(root: Path, run: str = "local") -> str:
    """Fig. 3a, agreed value per personality pair (``personalities_<run>.json``)."""
    data = _json(root, f"models/negotiation/report/personalities_{run}.json")
    codes = data["personalities"]
    spread = data["games_per_pair"] > 1
    rows = []
    for i, code in enumerate(codes):
        cells = []
        for j in range(len(codes)):
            cell = _f(data["mean"][i][j], 2)
            if spread:
                cell += f" ± {_f(data['sd'][i][j], 2)}"
            if data["consensus_share"][i][j] < 1:
                cell += f" ({100 * data['consensus_share'][i][j]:.0f} % consensus)"
            cells.append(cell)
        rows.append([f"{PERSONALITY_NAMES.get(code, code)} ({code})", *cells])
    header = ["cost ↓ / reach →", *(f"{PERSONALITY_NAMES.get(c, c)} ({c})" for c in codes)]
    targets = data["targets"]
    sources = "; ".join(
        f"{role}: " + ", ".join(f"{k} {v}" for k, v in counts.items())
        for role, counts in data["sources"].items()
    )
    return (
        f"{_table(header, rows)}\n\nRows: the cost tenant's personality (target "
        f"{targets['cost']:.2f} req/s); columns: the reach tenant's (target "
        f"{targets['reach']:.2f}); middle ground {data['middle_ground']:.2f}, capacity "
        f"{data['capacity']:.2f} req/s. Cells: mean agreed value over "
        f"{data['games_per_pair']} game(s) per pair"
        f"{', ± sd' if spread else ''}; consensus share shown where below 100 %. "
        f"Negotiator `{data['llm']}`; decisions by source: {sources} "
        f"({100 * data['fallback_share']:.0f} % fallbacks); {data['seconds']:.0f} s. "
        f"Command: `{data['command']}`"
    )


APPS = ("content", "qa", "immersive", "critical")


def _fig6_set(data: dict, split: str) -> str:
    rows = []
    for model, r in data["sets"][split].items():
        per_app, overall = r["per_app"], r["overall"]
        rows.append(
            [model, *(_f(per_app[a]["mse"], 4) for a in APPS), _f(overall["mse"], 5),
             _f(overall["mae"], 4), f"{100 * overall['failure_rate']:.1f} %", str(overall["n"])]
        )  # fmt: skip
    header = ["model", *(f"{a} MSE" for a in APPS), "MSE", "MAE", "failures", "n"]
    return _table(header, rows)


def iokd_fig6(root: Path) -> str:
    """Fig. 6, intent precision per E-LAM and loss (``models/elam/report/fig6.json``)."""
    data = _json(root, "models/elam/report/fig6.json")
    parts = []
    for split in data["sets"]:
        parts.append(f"**{split}**\n\n{_fig6_set(data, split)}")
    rows = []
    for m in data.get("seed_means") or []:
        for split, r in m["mse"].items():
            rows.append(
                [m["family"], split, ", ".join(map(str, m["seeds"])), _f(r["iokd"], 5),
                 _f(r["dpo"], 5), _f(r["dpo"] - r["iokd"], 5), _f(r["paired_diff_se"], 5),
                 f"{r['iokd_wins']} of {len(m['seeds'])}"]
            )  # fmt: skip
    if rows:
        header = ["family", "set", "seeds", "IoKD mean MSE", "DPO mean MSE",
                  "DPO - IoKD", "standard error", "IoKD lower in"]  # fmt: skip
        parts.append(f"**Mean over seeds, paired by seed**\n\n{_table(header, rows)}")
    return "\n\n".join(parts)


def iokd_fig7(root: Path) -> str:
    """Fig. 7, MSE against labelled samples (``models/elam/report/fig7.json``)."""
    data = _json(root, "models/elam/report/fig7.json")
    rows = [
        [str(p["labelled"]), str(p["synthetic"]), _f(p["heldout_mse"], 5), _f(p["dev_mse"], 5)]
        for p in data["points"]
    ]
    table = _table(["labelled", "synthetic", "held-out MSE", "dev MSE"], rows)
    cfg = data["config"]
    return (
        f"{table}\n\nLoss `{cfg['loss']['kind']}`, {cfg['ensemble']} head(s) per point, "
        f"seed {cfg['seed']}; {data.get('note', '')}."
    )


def _srl_report(root: Path) -> dict:
    return _json(root, "models/policy/report/srl_report.json")


def srl_fig9(root: Path) -> str:
    """Fig. 9, each policy's final training factors (``srl_report.json``)."""
    data = _srl_report(root)["fig9_final_factors"]
    rows = [
        [f"`{name}`", _f(r["C"]), _f(r["B"], 4), _f(r["L"], 2), _f(r["P_outage"])]
        for name, r in data.items()
    ]
    return _table(["policy", "C", "B", "L (s)", "P outage"], rows)


def srl_fig10(root: Path) -> str:
    """Fig. 10, policy selection by intent similarity (``srl_report.json``)."""
    r = _srl_report(root)["fig10_policy_selection"]
    rows = [
        ["users", str(r["users"])],
        ["nearest policy is the best of the four", f"{100 * r['nearest_is_best_share']:.1f} %"],
        ["nearest policy beats the mean of the other three",
         f"{100 * r['nearest_beats_mean_of_others_share']:.1f} %"],
        ["nearest policy is the user's own application's",
         f"{100 * r['nearest_is_own_app_share']:.1f} %"],
        ["normalised score, nearest policy", _f(r["normalized_score_nearest_policy"])],
        ["normalised score, own application's policy", _f(r["normalized_score_own_app_policy"])],
        ["normalised score, best policy per user", _f(r["normalized_score_best_policy"])],
        ["normalised score, mean over policies", _f(r["normalized_score_mean_policy"])],
    ]  # fmt: skip
    return _table(["measure", "value"], rows)


def srl_fig11(root: Path) -> str:
    """Fig. 11, in-context calibration against outlier translations (``srl_report.json``)."""
    r = _srl_report(root)["fig11_icl_ablation"]
    names = {
        "clean": "no outliers",
        "outliers_no_icl": "outliers, no calibration",
        "outliers_icl": "outliers, calibrated (eqs. 44-46)",
    }
    rows = [
        [label, _f(r[key]["normalized_score"]), _f(r[key]["on_outliers"]),
         _f(r[key]["on_regular"])]
        for key, label in names.items()
    ]  # fmt: skip
    table = _table(["translations", "normalised score", "on the outliers", "on the rest"], rows)
    return (
        f"{table}\n\n{r['requests']} requests, {r['outliers']} outliers "
        f"({100 * r['outlier_share']:.0f} %), memory of the {r['k_recent']} most recent."
    )


def srl_generalisation(root: Path) -> str:
    """Policies trained at N = 81 on networks of other sizes (``srl_report.json``)."""
    data = _srl_report(root)["generalisation"]
    rows = [
        [size, _f(r["srl"]), _f(r["srl_general"]), _f(r["drl_even"]), _f(r["greedy"])]
        for size, r in data.items()
    ]
    return _table(["network", "SRL", "SRL general", "DRL (Even)", "Greedy"], rows)


SIZE_REPORTS = {
    81: "models/policy/report/eval_dev_seeds101-105.json",
    300: "models/policy/report/eval_dev_seeds101-105_agents300.json",
    600: "models/policy/report/eval_dev_seeds101-105_agents600.json",
}


def srl_sizes(root: Path) -> str:
    """The shipped policies against the exact optimum for their own E-LAM's predictions,
    per network size (``xapp-composer eval --agents N``), greedy and, where the report has
    them (``--starts``), with multi-start decoding."""
    rows = []
    for n, path in SIZE_REPORTS.items():
        data = _json(root, path)
        elam = max(data["srl"]["elam_share"], key=data["srl"]["elam_share"].get)
        best = data[f"ref_best_for_{elam}"]["normalized_score"]
        decodings = [("greedy", "")] + [
            (f"{m} starts", f"_m{m}") for m in data["_meta"].get("starts", [])
        ]
        for label, suffix in decodings:
            srl, general = data[f"srl{suffix}"], data[f"srl_general{suffix}"]
            rows.append(
                [str(n), label, _f(srl["normalized_score"]), _f(general["normalized_score"]),
                 f"{_f(best)} (`{elam}`)", _f(best - srl["normalized_score"]),
                 _f(best - general["normalized_score"]), _f(srl.get("decide_p50_ms"), 2),
                 _f(data["drl_even"]["normalized_score"]), str(data["_meta"]["pairs"])]
            )  # fmt: skip
    header = ["agents", "decoding", "SRL", "SRL general", "exact optimum for the E-LAM's vector",
              "gap SRL", "gap SRL general", "SRL decision p50 ms", "DRL (Even)",
              "pairs"]  # fmt: skip
    return _table(header, rows)


STARTS_VALIDATION = "models/policy/report/srl_starts_validation.json"


def srl_starts_validation(root: Path) -> str:
    """Multi-start decoding's m on the training's validation pairs
    (``bench/srl_starts.py``)."""
    data = _json(root, STARTS_VALIDATION)
    rows = []
    for n, size in data["sizes"].items():
        for name, r in size["methods"].items():
            label, _, m = name.rpartition("_m")
            rows.append(
                [n, f"`{label}`", m, _f(r["normalized_score"]), _f(r["best_for_own_predictions"]),
                 _f(r["gap"]), _f(r["feasible"]), _f(r["decide_p50_ms"], 2),
                 _f(r["decide_p90_ms"], 2), str(size["pairs"])]
            )  # fmt: skip
    header = ["agents", "policy", "starts m", "normalised score",
              "exact optimum for its own predictions", "gap", "feasible", "decision p50 ms",
              "p90 ms", "pairs"]  # fmt: skip
    return (
        f"{_table(header, rows)}\n\nValidation networks {data['network_seeds']}; "
        f"command: `{data['command']}`"
    )


def negotiation_timeline(root: Path, run: str = "scripted-soft") -> str:
    """The negotiation timeline study (``models/negotiation/report/timeline_<run>.json``)."""
    data = _json(root, f"models/negotiation/report/timeline_{run}.json")
    rows = []
    for n in data["negotiations"]:
        sources = "; ".join(
            f"{role}: " + ", ".join(f"{k} {v}" for k, v in counts.items())
            for role, counts in n["sources"].items()
        )
        rows.append(
            [n["status"], _f(n["capacity"], 2), ", ".join(_f(t, 2) for t in n["targets"]),
             _f(n["theoretical"], 3), _f(n["agreed"], 3), str(n["rounds"]), str(n["warnings"]),
             str(n["penalties"]), sources]
        )  # fmt: skip
    header = ["status", "capacity", "tenants' targets", "optimum x*", "agreed", "rounds",
              "warnings", "penalties", "decisions by source"]  # fmt: skip
    outcomes = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in data["outcomes"].items())
    return (
        f"{_table(header, rows)}\n\nDesign `{data['design']}`, negotiator `{data['llm']}`, "
        f"{data['ticks']} ticks; arrivals: {outcomes}; command: `{data['command']}`"
    )


def guard_eval(root: Path, seed: int) -> str:
    """The intrusion detector on an unseen recording (``models/guard/eval-seed-<n>.json``)."""
    data = _json(root, f"models/guard/eval-seed-{seed}.json")
    classes = list(data["windows"])
    rows = [
        [f"`{name}`", _f(m["accuracy"], 4), f"{m['macro_f1']:.4f} ± {m['macro_f1_std']:.4f}",
         *(_f(m["per_class"][c]["f1"], 2) for c in classes)]
        for name, m in data["methods"].items()
    ]  # fmt: skip
    header = ["method", "accuracy", "macro-F1 (± sd, 5 seeds)", *(f"{c} F1" for c in classes)]
    windows = ", ".join(f"{c} {n}" for c, n in data["windows"].items())
    alerts = data["alerts"]
    delays = [d["max_delay"] for pace in alerts["episodes"].values() for d in pace.values()]
    detected = sum(d["detected"] for pace in alerts["episodes"].values() for d in pace.values())
    episodes = sum(d["episodes"] for pace in alerts["episodes"].values() for d in pace.values())
    text = (
        f"{_table(header, rows)}\n\nTest seed {data['test_seed']}; windows: {windows}. "
        f"Alerts of `{alerts['detector']}`: {detected} of {episodes} attack episodes detected, "
        f"largest delay {max(delays)} windows; {alerts['false_alarms']} false alarms in "
        f"{alerts['benign_windows']} benign windows ({alerts['false_alarms_per_10k']:.1f} per "
        "10,000)."
    )
    clean = data.get("clean")
    if clean:
        text += (
            f" Clean run: {clean['requests']} requests, {clean['windows']} windows, "
            f"{clean['false_alarms']} false alarms ({clean['false_alarms_per_10k']:.2f} per "
            "10,000)."
        )
    return text


def iokd_build(root: Path) -> str:
    """What the IoKD dataset build asked, accepted and rejected (``models/elam/data/build.json``)."""
    data = _json(root, "models/elam/data/build.json")
    rows = []
    for app, r in data["apps"].items():
        aug = r["augmentation"]
        per_round = "; ".join(
            f"round {x['round']}: {x['accepted']} of {x['attempted']}" for x in aug["rounds"]
        )
        rows.append(
            [app, str(r["d_u"]), str(r["d_rel"]), str(aug["requested"]), str(aug["accepted"]),
             per_round, str(r["d_iokd"])]
        )  # fmt: skip
    header = ["application", "D_u", "D_rel", "synthetic asked", "accepted",
              "accepted per round", "D_IoKD"]  # fmt: skip
    cot = data["cot"]["rounds"]
    accepted = sum(x["accepted"] for x in cot)
    attempted = sum(x["attempted"] for x in cot)
    return (
        f"{_table(header, rows)}\n\nC-LAM `{data['clam']}`; chain-of-thought explanations "
        f"accepted {accepted} of {attempted} (the rubric's reading of the vector replaces "
        f"the rest); built in {data['seconds']:.0f} s."
    )


LARGE_SCALE = "models/policy/report/bench_large.json"
LARGE_SCALE_STARTS = "models/policy/report/bench_large_starts.json"


def large_scale(root: Path, path: str = LARGE_SCALE) -> str:
    """SRL, beam search and the proposer's reduced graph per network size
    (``bench/bench_large.py``; ``path``: which run)."""
    data = _json(root, path)
    rows, verdicts = [], []
    for size in data["sizes"]:
        for name, m in size["methods"].items():
            rows.append(
                [f"{size['agents']:,}", f"`{name}`", _f(m["q"], 4), _f(m["gap_to_best_known"], 4),
                 str(m["infeasible"]), _f(m["p50_ms"], 1), _f(m["p90_ms"], 1)]
            )  # fmt: skip
        others = ", ".join(f"`{v}`" for v in size["srl_variants_beating_beam8"]) or "none"
        verdicts.append(
            f"{size['agents']:,} agents: {'yes' if size['srl_beats_beam8'] else 'no'} "
            f"(SRL variants that do: {others}; {size['requests']} requests, prepare "
            f"{size['prepare_s']:.2f} s, proposer profile {size['profile_ms']:.0f} ms)"
        )
    header = ["agents", "method", "mean Q*_s", "gap to best known", "infeasible",
              "p50 ms", "p90 ms"]  # fmt: skip
    return (
        f"{_table(header, rows)}\n\nSRL beats beam-8 at no more latency (mean Q*_s higher, "
        f"p50 no higher): " + "; ".join(verdicts) + f". Policy `{data['policy']}`, network "
        f"seeds {data['network_seeds']}; command: `{data['command']}`"
    )


def large_scale_paired(root: Path) -> str:
    """Each SRL variant against beam-8 on the same requests: paired difference of Q*_s,
    its standard error, wins / ties / losses, and both p50 latencies
    (``bench/bench_large.py``, the multi-start run)."""
    data = _json(root, LARGE_SCALE_STARTS)
    rows = []
    for size in data["sizes"]:
        beam = size["methods"]["beam8"]
        for name, d in size["srl_vs_beam8"].items():
            m = size["methods"][name]
            rows.append(
                [f"{size['agents']:,}", f"`{name}`", f"{d['mean_diff']:+.4f}", _f(d["se"], 4),
                 f"{d['wins']} / {d['ties']} / {d['losses']}",
                 f"{_f(m['p50_ms'], 1)} / {_f(beam['p50_ms'], 1)}",
                 "yes" if name in size["srl_variants_beating_beam8"] else "no"]
            )  # fmt: skip
    header = ["agents", "SRL variant", "Q*_s minus beam-8", "standard error",
              "wins / ties / losses", "p50 ms (variant / beam-8)",
              "beats beam-8 at no more latency"]  # fmt: skip
    return _table(header, rows)


def large_scale_per_k(root: Path) -> str:
    """Score lost per proposer size k (``bench/bench_large.py``)."""
    data = _json(root, LARGE_SCALE)
    rows = []
    for size in data["sizes"]:
        srl = size["methods"]["srl"]
        for k, r in size["per_k"].items():
            rows.append(
                [f"{size['agents']:,}", k, _f(r["propose_p50_ms"], 1), _f(r["srl_reduced_q"], 4),
                 _f(r["srl_reduced_loss_vs_srl"], 4), _f(r["srl_reduced_p50_ms"], 1),
                 _f(r["topk_exhaustive_q"], 4), _f(r["topk_exhaustive_loss_vs_best_known"], 4),
                 _f(r["topk_exhaustive_p50_ms"], 1), f"{_f(srl['q'], 4)} / {_f(srl['p50_ms'], 1)}"]
            )  # fmt: skip
    header = ["agents", "k", "propose p50 ms", "SRL on top-k: Q*_s", "lost vs SRL",
              "p50 ms", "top-k exhaustive: Q*_s", "lost vs best known", "p50 ms",
              "SRL whole graph: Q*_s / p50 ms"]  # fmt: skip
    return _table(header, rows)


def proposer_cost(root: Path) -> str:
    """What the xApp's proposer (``XAPP_PROPOSER_K``) costs and gains per network size and
    k, against the policy on the whole graph (``bench/bench_large.py``)."""
    data = _json(root, LARGE_SCALE)
    rows = []
    for size in data["sizes"]:
        srl = size["methods"]["srl"]
        for k, r in size["per_k"].items():
            reduced = size["methods"][f"srl_k{k}"]
            rows.append(
                [f"{size['agents']:,}", k, _f(size["profile_ms"], 1), _f(r["propose_p50_ms"], 1),
                 f"{_f(reduced['p50_ms'], 1)} / {_f(reduced['p90_ms'], 1)}",
                 f"{_f(srl['p50_ms'], 1)} / {_f(srl['p90_ms'], 1)}",
                 _f(reduced["q"], 4), _f(srl["q"], 4), _f(-r["srl_reduced_loss_vs_srl"], 4)]
            )  # fmt: skip
    header = ["agents", "k", "profile ms (per state)", "propose p50 ms",
              "proposer + SRL p50 / p90 ms", "SRL whole graph p50 / p90 ms",
              "Q*_s with proposer", "Q*_s whole graph", "Q*_s change"]  # fmt: skip
    return (
        f"{_table(header, rows)}\n\nPolicy `{data['policy']}`, network seeds "
        f"{data['network_seeds']}; command: `{data['command']}`"
    )


def _ray_runs(d: dict, label: str) -> str:
    """Every run's episodes/s of one configuration of a ``bench_ray.py`` result."""
    return ", ".join(_f(x, 0) for x in d[f"{label}_episodes_per_s_runs"])


def ray_scale(root: Path) -> str:
    """SRL training episodes/s in one process and on 1 and 2 Ray workers, and where an
    iteration's time goes (``models/policy/report/ray_scale*.json``, ``bench/bench_ray.py``:
    one table row per run file and configuration)."""
    files = sorted((root / "models/policy/report").glob("ray_scale*.json"))
    if not files:
        raise FileNotFoundError("no models/policy/report/ray_scale*.json")
    rows, threads = [], set()
    for path in files:
        d = json.loads(path.read_text())
        threads.add(d["threads"])
        run = (f"{path.stem} ({d['batch_episodes']} / {d.get('minibatch_episodes', 128)}; "
               f"{d['iterations']} x {d['repeats']})")  # fmt: skip
        ph = d["in_process_phases_s"]
        rows.append(
            [run, "in one process", _f(d["in_process_episodes_per_s"], 0), _ray_runs(d, "in_process"),
             _f(ph["rollout"]), _f(ph["update"]), "—", "—"]
        )  # fmt: skip
        for n in (1, 2):
            t = d[f"ray_{n}_phases_s"]
            rows.append(
                [run, f"Ray, {n} worker{'s' if n > 1 else ''}",
                 _f(d[f"ray_{n}_episodes_per_s"], 0), _ray_runs(d, f"ray_{n}"),
                 _f(t["worker_collect"]), _f(t["worker_gradient"] + t["worker_step"]),
                 _f(t["worker_allreduce"]), _f(t["rollouts"] + t["update"])]
            )  # fmt: skip
        rows.append(
            [run, "2 workers over 1", f"**{d['speedup_2_over_1']:.2f}x**",
             f"ceiling {d['ceiling_speedup_2_over_1']:.2f}x", "", "", "", ""]
        )  # fmt: skip
    header = ["run (episodes per iteration / per minibatch; iterations x runs)", "training", "episodes/s (best)", "all runs", "episodes (s/it)",
              "gradients + steps (s/it)", "all-reduce and wait (s/it)",
              "learner waiting (s/it)"]  # fmt: skip
    return (
        f"{_table(header, rows)}\n\nEpisodes/s: the best of each configuration's "
        f"interleaved runs (all listed), {'/'.join(map(str, sorted(threads)))} torch "
        "thread(s) per process. The phases are the "
        "best run's, for Ray per worker (mean over workers) and the learner's waits; the "
        "ceiling is one process's iteration on the whole batch over one on half of it "
        "(half the episodes, minibatches and pool turnover): two workers with a free core "
        "each and no cost of their own."
    )


def ray_parity(root: Path) -> str:
    """The general policy trained in one process and on 2 Ray workers at equal episodes,
    on the dev intents, per seed (``models/policy/report/ray_parity_seed<k>.json``,
    ``bench/ray_parity.py``), and further Ray runs of a seed against its single-process
    run (``ray_parity_seed<k>_<label>.json``, ``--single-process-from``)."""
    files = sorted((root / "models/policy/report").glob("ray_parity_seed*.json"))
    if not files:
        raise FileNotFoundError("no models/policy/report/ray_parity_seed*.json")
    rows, diffs, reruns = [], [], []
    for path in files:
        d = json.loads(path.read_text())
        apps = list(d["single_process"]["srl_per_app"])
        labels = (("single_process", "one process"), ("ray_2", "Ray, 2 workers"))
        if "single_process_from" in d:  # its single-process row is another file's
            labels = labels[1:]
            reruns.append(f"seed {d['seed']} ({path.stem}) {d['srl_difference']:+.4f}")
        else:
            diffs.append(d["srl_difference"])
        for label, name in labels:
            r = d[label]
            rows.append(
                [str(d["seed"]), path.stem, name, str(r["train"]["episodes"]),
                 _f(r["train"]["seconds"], 0), _f(r["train"]["best"]["val_normalized_score"]),
                 _f(r["srl_normalized_score"]), *(_f(r["srl_per_app"][a]) for a in apps)]
            )  # fmt: skip
    header = ["seed", "file", "training", "episodes", "seconds", "validation (best)",
              "dev SRL", *(f"dev {a}" for a in apps)]  # fmt: skip
    per_seed = ", ".join(f"{x:+.4f}" for x in diffs)
    spread = f", sample standard deviation {statistics.stdev(diffs):.4f}" if len(diffs) > 1 else ""
    again = (
        f" Further Ray runs against their seed's single-process run: {'; '.join(reruns)}."
        if reruns
        else ""
    )
    return (
        f"{_table(header, rows)}\n\nDev SRL, Ray minus one process, per seed: {per_seed} "
        f"(mean {statistics.mean(diffs):+.4f}{spread}).{again}"
    )


RENDERERS.update(
    {
        "elam-cards": elam_cards,
        "elam-ablation": elam_ablation,
        "srl-eval": srl_eval,
        "srl-eval-101-105": lambda root: srl_eval(root, "101-105"),
        "negotiation-bench": negotiation_bench,
        "negotiation-bench-local": lambda root: negotiation_bench(root, "local"),
        "negotiation-personalities-local": negotiation_personalities,
        "negotiation-timeline": negotiation_timeline,
        "negotiation-timeline-local": lambda root: negotiation_timeline(root, "local-soft"),
        "iokd-build": iokd_build,
        "iokd-fig6": iokd_fig6,
        "iokd-fig7": iokd_fig7,
        "srl-fig9": srl_fig9,
        "srl-fig10": srl_fig10,
        "srl-fig11": srl_fig11,
        "srl-generalisation": srl_generalisation,
        "srl-sizes": srl_sizes,
        "srl-starts-validation": srl_starts_validation,
        "guard-eval-seed-11": lambda root: guard_eval(root, 11),
        "guard-eval-seed-7": lambda root: guard_eval(root, 7),
        "large-scale": large_scale,
        "large-scale-per-k": large_scale_per_k,
        "large-scale-starts": lambda root: large_scale(root, LARGE_SCALE_STARTS),
        "large-scale-starts-paired": large_scale_paired,
        "proposer-cost": proposer_cost,
        "ray-scale": ray_scale,
        "ray-parity": ray_parity,
    }
)
