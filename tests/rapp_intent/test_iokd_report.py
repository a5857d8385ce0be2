"""The IoKD report: section placement, Fig. 6 table and targets, card reuse, Fig. 7 plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.iokd import sample

from agentnet.intents import APPS
from rapp_intent.iokd import cards, fig6, fig7, plot, render
from rapp_intent.iokd.doc_section import write_section
from rapp_intent.iokd.report import DOC_AFTER
from servicekit.integrity import sha256_file

HEADING = render.SECTION_HEADING
SECTION = HEADING + "\n\nnumbers\n"


# --- README ---------------------------------------------------------------------------------
def test_section_goes_right_after_the_intent_rapp_section(tmp_path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# P\n\nintro\n\n## Intent rApp\n\nrapp text\n\n## Deploy\n\nd\n")
    write_section(readme, SECTION, after=DOC_AFTER)
    text = readme.read_text()
    assert text.index("## Intent rApp") < text.index(HEADING) < text.index("## Deploy")
    assert "rapp text\n\n" + HEADING in text and "d\n" in text
    # A second run replaces the section in place and leaves the others alone.
    write_section(readme, HEADING + "\n\nnew numbers\n", after=DOC_AFTER)
    again = readme.read_text()
    assert again.count(HEADING) == 1 and "new numbers" in again
    assert "numbers\n" not in again.replace("new numbers\n", "")
    assert again.replace("new numbers", "numbers") == text


def test_section_is_appended_without_the_anchor_and_kept_when_last(tmp_path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# P\n\n## Other\n\no\n")
    write_section(readme, SECTION, after=DOC_AFTER)
    assert readme.read_text() == "# P\n\n## Other\n\no\n\n" + SECTION
    write_section(readme, SECTION, after=DOC_AFTER)  # idempotent
    assert readme.read_text() == "# P\n\n## Other\n\no\n\n" + SECTION
    empty = tmp_path / "NEW.md"
    write_section(empty, SECTION, after=DOC_AFTER)
    assert empty.read_text() == SECTION
    # Only a level-2 heading that starts the line counts as the anchor.
    odd = tmp_path / "ODD.md"
    odd.write_text("# P\n\nsee ## Intent rApp below\n\n### Intent rApp notes\n")
    write_section(odd, SECTION, after=DOC_AFTER)
    assert odd.read_text().endswith("### Intent rApp notes\n\n" + SECTION)


# --- Fig. 6 ---------------------------------------------------------------------------------
def _rep(mse: float, fail: float = 0.0) -> dict:
    one = {"mse": mse, "mae": mse * 10, "failure_rate": fail, "n": 12}
    return {"overall": {**one, "n": 48}, "per_app": {a: dict(one) for a in APPS}}


def _fig6(**rows: float) -> dict:
    return {"sets": {"dev": {k.replace("_", " "): _rep(v) for k, v in rows.items()}}}


def test_targets_compare_the_measured_numbers() -> None:
    data = _fig6(even=0.015, minilm_IoKD=0.006, minilm_DPO=0.0061)
    data["sets"]["dev"]["smollm2 raw"] = _rep(0.024)
    data["sets"]["dev"]["smollm2 IoKD"] = _rep(0.020, fail=0.03)
    data["sets"]["dev"]["smollm2 DPO"] = _rep(0.019)
    got = {t["target"]: t["met"] for t in fig6.targets(data)}
    assert got == {
        "IoKD minilm MSE <= 40% of the even baseline's": True,
        "IoKD better than plain DPO (minilm)": True,
        "IoKD better than plain DPO (smollm2)": False,
        "distilled smollm2 failure rate <= 2%": False,
        "distilled smollm2 MSE below the raw model's": True,
    }
    assert fig6.targets(_fig6(even=0.015, minilm_IoKD=0.0062))[0]["met"] is False
    md = render.fig6_markdown(data)
    assert "| smollm2 IoKD | 0.0200 | 0.0200 | 0.0200 | 0.0200 | 0.02000 | 0.2000 | 3.0% |" in md


def _write_artefact(folder: Path, sets: dict, reports: dict) -> dict:
    folder.mkdir(parents=True)
    (folder / "w.bin").write_bytes(b"weights")
    card = {
        "artefact": "w.bin",
        "sha256": sha256_file(folder / "w.bin"),
        "evaluation": {
            name: {**reports[name], "sha256": cards.set_digest(samples)}
            for name, samples in sets.items()
        },
    }
    (folder / "card.json").write_text(json.dumps(card))
    return card


def test_a_cards_evaluation_is_reused_only_for_the_same_sets_and_weights(tmp_path) -> None:
    sets = {"heldout": [sample("qa-1", "quick, 2+2?", [0.2, 0.15, 0.5, 0.15], split="heldout")]}
    folder = tmp_path / "minilm"
    _write_artefact(folder, sets, {"heldout": _rep(0.005)})
    got = cards.card_evaluation(folder, sets)
    assert got is not None and got["reports"]["heldout"]["overall"]["mse"] == 0.005
    relabelled = {"heldout": [sample("qa-1", "quick, 2+2?", [0.25] * 4, split="heldout")]}
    assert cards.card_evaluation(folder, relabelled) is None  # another set: evaluate again
    assert cards.card_evaluation(folder, {**sets, "dev": sets["heldout"]}) is None
    (folder / "w.bin").write_bytes(b"retrained")
    assert cards.card_evaluation(folder, sets) is None  # weights no longer match the card
    assert cards.card_evaluation(tmp_path / "missing", sets) is None


def test_a_cards_evaluation_is_reused_only_for_the_same_decoding(tmp_path) -> None:
    sets = {"heldout": [sample("qa-1", "quick, 2+2?", [0.2, 0.15, 0.5, 0.15], split="heldout")]}
    expected = {"decoding": "expected", "beams": 4}
    folder = tmp_path / "smollm2"
    _write_artefact(folder, sets, {"heldout": {**_rep(0.015), "decoding": expected}})
    assert cards.card_evaluation(folder, sets, dict(expected)) is not None
    assert cards.card_evaluation(folder, sets, {"decoding": "expected", "beams": 1}) is None
    assert cards.card_evaluation(folder, sets, {"decoding": "constrained", "beams": 4}) is None
    assert cards.card_evaluation(folder, sets) is None  # made with a decoding, asked without
    plain = tmp_path / "plain"  # a report without the key was made with no options
    _write_artefact(plain, sets, {"heldout": _rep(0.02)})
    assert cards.card_evaluation(plain, sets, expected) is None
    assert cards.card_evaluation(plain, sets) is not None


def test_variant_decoding_follows_the_settings() -> None:
    from rapp_intent.settings import RappSettings

    minilm = fig6.Variant("minilm", "iokd", "minilm IoKD", None)
    smol = fig6.Variant("smollm2", "iokd", "smollm2 IoKD", None)
    settings = RappSettings(_env_file=None)
    assert fig6.variant_decoding(minilm, settings) == {}
    assert fig6.variant_decoding(smol, settings) == {"decoding": "expected", "beams": 4}
    free = RappSettings(_env_file=None, smollm2_decoding="free", smollm2_max_new_tokens=40)
    assert fig6.variant_decoding(smol, free) == {"decoding": "free", "max_new_tokens": 40}


def test_fig6_takes_card_rows_and_evaluates_the_raw_elam(tmp_path) -> None:
    from rapp_intent.iokd.data import heldout, load_labelled
    from rapp_intent.settings import RappSettings

    sets = {"heldout": heldout(load_labelled())}
    models = tmp_path / "elam"
    _write_artefact(models / "minilm", sets, {"heldout": _rep(0.0042)})
    data = fig6.fig6(models, ("minilm",), sets, RappSettings(_env_file=None))
    rows = data["sets"]["heldout"]
    assert list(rows) == ["even", "minilm raw", "minilm IoKD"]  # no DPO artefact here
    assert rows["minilm IoKD"]["overall"]["mse"] == 0.0042
    assert data["models"]["minilm IoKD"]["evaluated"] == "card"
    assert data["models"]["minilm raw"]["evaluated"] == "loaded"
    raw = rows["minilm raw"]["overall"]
    assert raw["n"] == len(sets["heldout"]) and 0 < raw["mse"] < rows["even"]["overall"]["mse"]


# --- Fig. 7 ---------------------------------------------------------------------------------
def test_fig7_subsets_are_nested_stratified_and_keep_synthetic_children() -> None:
    data = [
        sample(f"{a}-{i:03d}", f"request {a} {i}", [0.25] * 4, app=a)
        for a in APPS
        for i in range(8)
    ]
    data.append(
        sample(
            "qa-000~syn1",
            "x",
            [0.25] * 4,
            split="synthetic",
            origin="synthetic",
            source_id="qa-000",
        )
    )
    small, large = fig7.subset(data, 0.25), fig7.subset(data, 0.5)
    assert {s.id for s in small} <= {s.id for s in large}
    for app in APPS:
        assert sum(s.app == app and s.origin == "labelled" for s in small) == 2
    children = [s for s in large if s.origin == "synthetic"]
    assert all(c.source_id in {s.id for s in large} for c in children)


def test_fig7_plot_writes_a_png(tmp_path) -> None:
    points = [
        {"fraction": f, "augmented": aug, "labelled": n, "synthetic": 0, "heldout_mse": m}
        for f, n, m in ((0.5, 10, 0.01), (1.0, 20, 0.008))
        for aug in (False, True)
    ]
    path = plot.fig7_plot({"points": points}, tmp_path / "fig7.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("value", [None, float("nan")])
def test_missing_numbers_print_as_a_dash(value) -> None:
    assert render._fmt(value) == "-"


def test_readme_section_holds_the_table_targets_and_shipped_configuration() -> None:
    data = _fig6(even=0.015, minilm_raw=0.012, minilm_IoKD=0.006, minilm_DPO=0.0061)
    card = {
        "sha256": "ab" * 32,
        "size_bytes": 3 << 20,
        "training": {
            "epochs": 90,
            "pairs": 2228,
            "train_seconds": 120.0,
            "config": {
                "loss": {"kind": "iokd", "beta_base": 0.1, "lam": 1.5, "nll_weight": 1.0},
                "ensemble": 5,
                "hidden": 256,
            },
        },
    }
    section = render.SectionData(fig6=data, cards={"minilm": card}, targets=fig6.targets(data))
    text = render.iokd_section(section)
    assert text.startswith(HEADING + "\n")
    assert "| minilm IoKD | 0.0060 |" in text
    assert "| IoKD better than plain DPO (minilm) | MSE 0.00600 vs 0.00610 | yes |" in text
    assert "5 heads averaged into one (256 hidden units each), 90 epochs" in text
    assert "3.0 MB" in text and "2.0 min" in text and "`abababababab...`" in text


def test_rows_from_another_configuration_are_named(tmp_path) -> None:
    def card(folder: Path, loss: str, **config) -> str:
        folder.mkdir(parents=True)
        cfg = {"loss": {"kind": loss}, "seed": 0, "epochs": 300, "hidden": 256, **config}
        (folder / "card.json").write_text(json.dumps({"training": {"config": cfg}}))
        return str(folder)

    card(tmp_path / "minilm", "iokd", ensemble=5)
    info = {
        "minilm IoKD": {"family": "minilm", "variant": "iokd", "artefact": "x"},
        "minilm DPO": {
            "family": "minilm",
            "variant": "dpo",
            "artefact": card(tmp_path / "ablation" / "minilm-dpo", "dpo", ensemble=5),
        },
        "minilm IoKD, eq. 31 only": {
            "family": "minilm",
            "variant": "iokd-nll0",
            "artefact": card(tmp_path / "ablation" / "minilm-iokd-nll0", "iokd"),
        },
    }
    assert render.difference_lines(fig6.config_differences(info, tmp_path)) == [
        "- minilm IoKD, eq. 31 only: trained with ensemble 1 (shipped: 5)"
    ]


def test_the_section_names_how_the_generative_rows_were_decoded() -> None:
    models = {
        "even": {"family": "-"},
        "minilm IoKD": {"family": "minilm", "decoding": {}},
        "smollm2 IoKD": {"family": "smollm2", "decoding": {"decoding": "expected", "beams": 4}},
    }
    (line,) = [x for x in render.decoding_lines(models) if x]
    assert "`expected` (beams 4)" in line and "constrained`" in line
    assert render.decoding_lines({"minilm IoKD": {"decoding": {}}}) == []


def test_further_ablations_become_rows_named_by_what_differs(tmp_path) -> None:
    def card(folder: Path, beta_mean: float | None = None, **loss) -> None:
        folder.mkdir(parents=True)
        setup = {"kind": "iokd", "beta_base": 0.1, "lam": 1.5, "nll_weight": 1.0, **loss}
        seed = setup.pop("seed", 0)
        training = {"config": {"loss": setup, "seed": seed, "steps": 160}}
        if beta_mean is not None:
            training["beta_mean"] = beta_mean
        (folder / "card.json").write_text(json.dumps({"training": training}))

    card(tmp_path / "smollm2", 0.0803)
    card(tmp_path / "ablation" / "smollm2-dpo", 0.1, kind="dpo")
    card(tmp_path / "ablation" / "smollm2-iokd-matched", 0.1, beta_base=0.1246)
    card(tmp_path / "ablation" / "smollm2-iokd-s1", 0.0803, seed=1)
    card(tmp_path / "ablation" / "smollm2-dpo-s1", 0.1, kind="dpo", seed=1, lam=9.0)
    card(tmp_path / "ablation" / "minilm-dpo", kind="dpo")  # another family: not a row here
    (tmp_path / "ablation" / "smollm2-broken").mkdir()  # no card: skipped
    labels = [v.label for v in fig6.variants(tmp_path, ["smollm2"])]
    assert labels == [
        "smollm2 raw",
        "smollm2 DPO",
        "smollm2 IoKD",
        "smollm2 DPO (seed 1, mean beta 0.100)",  # lambda means nothing to plain DPO
        "smollm2 IoKD (beta_base 0.1246, mean beta 0.100)",
        "smollm2 IoKD (seed 1, mean beta 0.080)",
    ]
    extra = fig6.variants(tmp_path, ["smollm2"])[-1]
    assert extra.name == "extra:smollm2-iokd-s1" and extra.family == "smollm2"
    # The single-seed targets compare the shipped IoKD with the plain DPO row only.
    data = _fig6(even=0.015, smollm2_raw=0.02, smollm2_IoKD=0.0148, smollm2_DPO=0.0144)
    data["sets"]["dev"]["smollm2 IoKD (seed 1, mean beta 0.080)"] = _rep(0.0100)
    (row,) = [
        t for t in fig6.targets(data) if t["target"] == "IoKD better than plain DPO (smollm2)"
    ]
    assert row["met"] is False
    models = {v.label: {"variant": v.name} for v in fig6.variants(tmp_path, ["smollm2"])}
    assert "further ablations" in " ".join(render.extra_lines(models))
    assert render.extra_lines({"smollm2 DPO": {"variant": "dpo"}}) == []


def test_iokd_and_dpo_are_averaged_over_their_common_seeds(tmp_path) -> None:
    def card(folder: Path, **loss) -> str:
        folder.mkdir(parents=True)
        setup = {"kind": "iokd", "beta_base": 0.1, "lam": 1.5, "nll_weight": 1.0, **loss}
        seed = setup.pop("seed", 0)
        cfg = {"loss": setup, "seed": seed}
        (folder / "card.json").write_text(json.dumps({"training": {"config": cfg}}))
        return str(folder)

    ab = tmp_path / "ablation"
    arts = {
        "smollm2 IoKD": card(tmp_path / "smollm2"),
        "smollm2 DPO": card(ab / "smollm2-dpo", kind="dpo"),
        "s1 iokd": card(ab / "smollm2-iokd-s1", seed=1),
        "s1 dpo": card(ab / "smollm2-dpo-s1", kind="dpo", seed=1),
        "s2 dpo": card(ab / "smollm2-dpo-s2", kind="dpo", seed=2),  # no IoKD seed 2
        "matched": card(ab / "smollm2-iokd-m", beta_base=0.125, seed=1),  # another setting
    }
    mse = {"smollm2 IoKD": 0.0148, "smollm2 DPO": 0.0144, "s1 iokd": 0.0128, "s1 dpo": 0.0150}
    mse |= {"s2 dpo": 0.0001, "matched": 0.0001}
    f6 = {
        "sets": {"dev": {k: _rep(v) for k, v in mse.items()}},
        "models": {
            k: {"family": "smollm2", "setup": cards.card_setup(Path(a))} for k, a in arts.items()
        },
    }
    (entry,) = fig6.seed_means(f6)
    assert entry["family"] == "smollm2" and entry["seeds"] == [0, 1]
    assert entry["mse"]["dev"]["iokd"] == pytest.approx((0.0148 + 0.0128) / 2)
    assert entry["mse"]["dev"]["dpo"] == pytest.approx((0.0144 + 0.0150) / 2)
    (line, _) = render.seed_lines(fig6.seed_means(f6))
    assert entry["mse"]["dev"]["iokd_range"] == pytest.approx(0.0020)
    assert "seeds 0, 1" in line and "IoKD 0.01380 vs DPO 0.01470 (difference +0.00090" in line
    assert "IoKD moves 0.00200, DPO 0.00060" in line
    # Paired by seed: DPO - IoKD is -0.0004 (seed 0) and +0.0022 (seed 1).
    dev = entry["mse"]["dev"]
    assert dev["paired_diff"] == pytest.approx([-0.0004, 0.0022])
    assert dev["iokd_wins"] == 1
    # sd of the two differences 0.00184, divided by sqrt(2)
    assert dev["paired_diff_se"] == pytest.approx(0.0013)
    assert "IoKD lower in 1 of 2, standard error of the difference 0.00130" in line
    # The seed-mean target: IoKD ahead by 0.0009 but the standard error is 0.0013, not met.
    (row,) = [t for t in fig6.targets(f6) if "mean of" in t["target"]]
    assert row["target"] == "IoKD better than plain DPO (smollm2, mean of 2 seeds)"
    assert row["met"] is False and "+0.00090 +- 0.00130" in row["value"]
    assert "IoKD lower in 1 of 2 seeds" in row["value"]
    f6["sets"]["dev"]["smollm2 IoKD"] = _rep(0.0140)  # differences +0.0004, +0.0022
    (row,) = [t for t in fig6.targets(f6) if "mean of" in t["target"]]
    assert row["met"] is True and "+0.00130 +- 0.00090" in row["value"]
    f6["sets"]["dev"]["smollm2 IoKD"] = _rep(0.0148)
    # With one common seed there is nothing to average.
    del f6["models"]["s1 dpo"]
    assert fig6.seed_means(f6) == [] and render.seed_lines(fig6.seed_means(f6)) == []
