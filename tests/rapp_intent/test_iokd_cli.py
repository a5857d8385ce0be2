"""IoKD's command line: flags generated from the configs map onto the configs it builds."""

from __future__ import annotations

from agentnet.intents import APPS
from rapp_intent.cli import build_parser
from rapp_intent.iokd import cli as iokd_cli
from rapp_intent.iokd.config import (
    SHIPPED_LOSS,
    LossConfig,
    MinilmDistillConfig,
    ReportConfig,
    Smollm2DistillConfig,
)
from servicekit import cli


def _args(*argv: str):
    return build_parser().parse_args(list(argv))


def test_the_backend_preset_applies_unless_a_flag_overrides_it() -> None:
    local = iokd_cli.build_config("local", _args("iokd-dataset"))
    assert (local.augment.labels, local.augment.shots, local.augment.max_rounds) == (
        "source",
        1,
        2,
    )
    assert local.augment.ratio == 0.5 and local.cot.max_rounds == 1
    given = iokd_cli.build_config(
        "openai", _args("iokd-dataset", "--rounds", "5", "--ratio", "2", "--seed", "3", "--k", "6")
    )
    assert (given.augment.labels, given.augment.shots) == ("clam", 4)  # the preset's
    assert (given.augment.max_rounds, given.augment.ratio, given.augment.seed) == (5, 2.0, 3)
    assert given.k == 6 and given.tau_min == 0.5  # BuildConfig's flags and default


def test_distill_flags_become_the_family_configs() -> None:
    args = _args("distill", "--loss", "dpo", "--beta-base", "0.2", "--epochs", "7", "--lr", "0.01")
    loss = cli.config_from_args(LossConfig, args)
    assert loss == LossConfig(kind="dpo", beta_base=0.2, lam=1.5, nll_weight=1.0)
    minilm = cli.config_from_args(MinilmDistillConfig, args, "minilm_", loss=loss, seed=args.seed)
    assert minilm.epochs == 7 and minilm.loss.kind == "dpo"
    assert minilm.lr == MinilmDistillConfig().lr  # --lr is smollm2's
    smol = cli.config_from_args(Smollm2DistillConfig, args, "smollm2_", loss=loss, seed=0)
    assert smol.lr == 0.01 and smol.steps == Smollm2DistillConfig().steps
    # Without flags: the shipped configuration of either family.
    plain = _args("distill")
    assert cli.config_from_args(LossConfig, plain) == SHIPPED_LOSS
    assert cli.config_from_args(
        MinilmDistillConfig, plain, "minilm_", loss=SHIPPED_LOSS, seed=0
    ) == (MinilmDistillConfig())


def test_only_the_shipped_configuration_goes_to_the_served_folder(tmp_path) -> None:
    served = iokd_cli.output_dir(tmp_path, "minilm", SHIPPED_LOSS, APPS, augment=True)
    assert served == tmp_path / "minilm"
    dpo = LossConfig(kind="dpo", nll_weight=1.0)
    assert iokd_cli.output_dir(tmp_path, "smollm2", dpo, APPS, True).name == "smollm2-dpo"
    nll0 = LossConfig(nll_weight=0.0)
    assert iokd_cli.output_dir(tmp_path, "minilm", nll0, ["qa"], False) == (
        tmp_path / "ablation" / "minilm-iokd-nll0-noaug-qa"
    )


def test_the_report_config_comes_from_its_flags(tmp_path) -> None:
    args = _args("iokd-report", "--families", "minilm", "--no-fig7", "--fresh", "--no-progress")
    config = cli.config_from_args(
        ReportConfig,
        args,
        models_dir=tmp_path,
        out_dir=tmp_path / "report",
        dev=None,
        families=tuple(args.families),
    )
    assert config.families == ("minilm",) and not config.fig7 and config.fresh
    assert not config.progress and config.readme is None
