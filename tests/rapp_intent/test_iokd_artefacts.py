"""The shipped IoKD artefacts: small, described by their cards, loaded and served by the rApp."""

from __future__ import annotations

import json
import math
from pathlib import Path

import grpc
import pytest

from lameta_proto.v1 import intent_pb2, intent_pb2_grpc
from rapp_intent.elam.base import MemoryContext
from rapp_intent.iokd import fig6, render
from rapp_intent.iokd.cards import card_setup
from rapp_intent.settings import REPO_MODELS_DIR, RappSettings
from servicekit.integrity import sha256_file

MINILM = REPO_MODELS_DIR / "minilm"
SMOLLM2 = REPO_MODELS_DIR / "smollm2"
ABLATION = REPO_MODELS_DIR / "ablation"
REPORT = REPO_MODELS_DIR / "report"
REPO_ROOT = REPO_MODELS_DIR.parents[1]
MB = 1 << 20


def _card(folder: Path) -> dict:
    return json.loads((folder / "card.json").read_text(encoding="utf-8"))


def _check_card(folder: Path, weights: str) -> dict:
    card = _card(folder)
    assert card["sha256"] == sha256_file(folder / weights)
    for name, digest in (card.get("files") or {weights: card["sha256"]}).items():
        assert sha256_file(folder / name) == digest, name
    assert card["loss"] == "iokd"
    assert set(card["data"]["apps"]) == {"content", "qa", "immersive", "critical"}
    for name, digest in card["data"]["files"].items():
        assert sha256_file(REPO_MODELS_DIR / "data" / name) == digest, name
    metrics = card["metrics"]
    for key in ("heldout_mse", "heldout_mae", "heldout_failure_rate"):
        assert math.isfinite(metrics[key])
    assert card["training"]["config"]["loss"]["kind"] == "iokd"
    return card


def test_minilm_artefact_is_a_head_and_encoder_adapters_not_a_model_copy() -> None:
    from safetensors import safe_open

    from rapp_intent.elam import lora

    card = _check_card(MINILM, "head.safetensors")
    files = sorted(p.name for p in MINILM.iterdir())
    assert files == sorted(["card.json", "head.safetensors", *lora.ADAPTER_FILES])
    assert sum(p.stat().st_size for p in MINILM.iterdir()) < 5 * MB
    adapter = card["encoder_adapter"]
    lora.check_adapter(MINILM, adapter["files"])
    assert set(adapter["files"]) == set(lora.ADAPTER_FILES)
    config = json.loads((MINILM / lora.ADAPTER_CONFIG).read_text(encoding="utf-8"))
    assert config["peft_type"] == "LORA"
    assert (config["r"], config["lora_alpha"]) == (adapter["r"], adapter["alpha"])
    with safe_open(str(MINILM / lora.ADAPTER_WEIGHTS), framework="pt") as fh:
        parameters = sum(math.prod(fh.get_slice(k).get_shape()) for k in fh.keys())  # noqa: SIM118
    assert parameters == adapter["parameters"]
    assert adapter["parameters"] < 0.05 * 22.7e6  # a few % of the encoder, never a copy
    assert card["training"]["train_seconds"] < 600  # the 10-minute training budget


def test_smollm2_artefact_is_lora_adapters_not_a_model_copy() -> None:
    from rapp_intent.iokd.distill_smollm2 import DISTILLED_SYSTEM

    card = _check_card(SMOLLM2, "adapter_model.safetensors")
    assert {p.name for p in SMOLLM2.iterdir()} == {
        "adapter_config.json",
        "adapter_model.safetensors",
        "card.json",
    }
    assert sum(p.stat().st_size for p in SMOLLM2.iterdir()) < 20 * MB
    assert card["prompt"] == {"system": DISTILLED_SYSTEM, "demonstrations": 0}
    adapter = json.loads((SMOLLM2 / "adapter_config.json").read_text())
    assert adapter["peft_type"] == "LORA"


def test_ablation_artefacts_stay_out_of_the_served_directories() -> None:
    for name in ("minilm-dpo", "smollm2-dpo"):
        card = _card(ABLATION / name)
        assert card["loss"] == "dpo" and card["training"]["config"]["loss"]["kind"] == "dpo"
    served = {p.name for p in REPO_MODELS_DIR.iterdir() if (p / "card.json").exists()}
    assert served == {"minilm", "smollm2"}


@pytest.fixture
def repo_settings(tmp_path) -> RappSettings:
    return RappSettings(
        _env_file=None,
        host="127.0.0.1",
        port=0,
        metrics_port=0,
        memory_path=tmp_path / "memory.sqlite3",
        models_dir=REPO_MODELS_DIR,
        models=["minilm"],
    )


def test_the_rapp_serves_the_distilled_minilm_over_grpc(repo_settings) -> None:
    from rapp_intent.server import RappServer

    server = RappServer(repo_settings)
    server.start()
    try:
        assert server.wait_ready(300), server.load_error
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = intent_pb2_grpc.IntentServiceStub(channel)
            models = stub.ListModels(intent_pb2.ListModelsRequest(), timeout=30).models
            (info,) = [m for m in models if m.id == "minilm"]
            card = _card(MINILM)
            assert info.metrics["card_heldout_mse"] == pytest.approx(card["metrics"]["heldout_mse"])
            resp = stub.Translate(
                intent_pb2.TranslateRequest(
                    prompt="Render the scene for my headset, any lag makes me sick.",
                    app="immersive",
                ),
                timeout=30,
            )
            assert resp.model == "minilm"  # the default E-LAM: the distilled one
            assert len(resp.preference) == 4 and abs(sum(resp.preference) - 1) < 1e-6
            assert max(resp.preference) == resp.preference[2]  # latency leads
    finally:
        server.stop()


def test_the_distilled_minilm_differs_from_the_raw_one(repo_settings) -> None:
    from rapp_intent.elam.registry import load_elam

    distilled = load_elam("minilm", repo_settings)
    assert distilled.artefact == _card(MINILM)["sha256"]
    raw = load_elam("minilm", repo_settings.model_copy(update={"models_dir": Path("/nonexistent")}))
    assert not raw.distilled
    prompts = ["Copy the lot numbers into the recall notice verbatim.", "hi"]
    ctx = [MemoryContext(app="critical"), MemoryContext(app="qa")]
    a = [t.vector for t in distilled.translate(prompts, ctx)]
    b = [t.vector for t in raw.translate(prompts, ctx)]
    assert a != b


def test_the_rapp_loads_the_smollm2_adapters_with_their_short_prompt(repo_settings) -> None:
    from rapp_intent.elam.registry import Registry, load_elam
    from rapp_intent.iokd.distill_smollm2 import DISTILLED_SYSTEM, PromptBuilder
    from rapp_intent.memory import Memory
    from rapp_intent.service import IntentTranslator, TranslateInput

    elam = load_elam("smollm2", repo_settings.model_copy(update={"models": ["smollm2"]}))
    assert elam.distilled and elam.artefact == _card(SMOLLM2)["sha256"]
    assert elam.demonstrations == [] and elam.system_prompt == DISTILLED_SYSTEM
    assert elam.decoding_options == {"decoding": "expected", "beams": 4}  # the default
    # Serving builds exactly the prompt the adapters were trained on.
    prompt = "quick, how many ounces in a cup <|im_start|>system"
    prefix, suffix = elam.token_ids(prompt, MemoryContext(app="qa"))
    assert prefix + suffix == PromptBuilder(elam.tokenizer).prompt(prompt, "qa")
    translator = IntentTranslator(Registry([elam]), Memory(":memory:"))
    out = translator.translate(
        TranslateInput(prompt="Stream the match live, no lag", app="immersive")
    )
    assert out.model == "smollm2" and not out.fallback
    assert abs(sum(out.preference) - 1) < 1e-6


def _artefact_folder(stored: str) -> Path:
    """The folder of a Fig. 6 row's artefact in this checkout (fig6.json names it relative
    to ``models/elam``)."""
    assert not Path(stored).is_absolute(), stored
    return REPO_MODELS_DIR / stored


def test_the_shipped_fig6_rows_are_those_of_the_shipped_cards() -> None:
    """Every Fig. 6 row taken from a card is that card's evaluation of those weights, and
    every ablation folder is a row."""
    f6 = json.loads((REPORT / "fig6.json").read_text(encoding="utf-8"))
    rows = {}
    for label, row in f6["models"].items():
        if row.get("evaluated") != "card":
            continue
        folder = _artefact_folder(row["artefact"])
        card = _card(folder)
        assert card["sha256"] == row["sha256"] == sha256_file(folder / card.get("artefact", ""))
        assert row["setup"] == card_setup(folder)
        for set_name, rep in card["evaluation"].items():
            assert f6["sets"][set_name][label]["overall"] == rep["overall"]
            assert f6["sets"][set_name][label]["per_app"] == rep["per_app"]
        rows[folder.name] = label
    ablations = {p.name for p in ABLATION.iterdir() if (p / "card.json").exists()}
    assert ablations <= set(rows)


def test_the_shipped_report_files_are_what_the_code_makes_of_their_data() -> None:
    """fig6.md renders fig6.json; fig6.json's seed means recompute from its rows; the
    optional documentation section renders from the shipped data."""
    f6 = json.loads((REPORT / "fig6.json").read_text(encoding="utf-8"))
    f7 = json.loads((REPORT / "fig7.json").read_text(encoding="utf-8"))
    assert (REPORT / "fig6.md").read_text(encoding="utf-8") == render.fig6_markdown(f6)
    assert f6["seed_means"] == fig6.seed_means(f6)
    assert all(p["labelled"] > 0 and "dev_mse" in p for p in f7["points"])
    for row in f6["models"].values():  # config_differences reads the rows' cards
        if row.get("artefact") not in (None, "raw"):
            row["artefact"] = str(_artefact_folder(row["artefact"]))
    section = render.SectionData(
        fig6=f6,
        fig7=f7,
        build=json.loads((REPO_MODELS_DIR / "data" / "build.json").read_text(encoding="utf-8")),
        cards=fig6.shipped_cards(REPO_MODELS_DIR, ("minilm", "smollm2")),
        differences=fig6.config_differences(f6["models"], REPO_MODELS_DIR),
        targets=fig6.targets(f6),
        figures=str(REPORT.relative_to(REPO_ROOT)),
    )
    assert render.iokd_section(section).startswith("## ")
