"""The paper's precision study (section VI-B): Fig. 6 and Fig. 7, written to files.

:func:`make_report` runs the studies (:mod:`~rapp_intent.iokd.fig6`,
:mod:`~rapp_intent.iokd.fig7`), writes their data (``fig6.json``, ``fig7.json``), renders
them (``fig6.md``, ``fig7.png``; :mod:`~rapp_intent.iokd.render`,
:mod:`~rapp_intent.iokd.plot`) and, when given a Markdown file (``--readme``), puts an IoKD
section into it (:mod:`~rapp_intent.iokd.doc_section`). The docs render both figures'
tables from the JSON files at build time.

A row whose artefact's model card already holds an evaluation of the same set is taken
from the card (:mod:`~rapp_intent.iokd.cards`); ``fresh=True``
(``iokd-report --fresh``) re-evaluates everything.
"""

from __future__ import annotations

import json
from typing import Any

from rapp_intent.iokd.cards import evaluation_sets
from rapp_intent.iokd.config import BUILD_FILE, ReportConfig
from rapp_intent.iokd.doc_section import write_section
from rapp_intent.iokd.fig6 import config_differences, fig6, seed_means, shipped_cards, targets
from rapp_intent.iokd.fig7 import fig7
from rapp_intent.iokd.plot import fig7_plot
from rapp_intent.iokd.render import SectionData, fig6_markdown, iokd_section
from rapp_intent.settings import RappSettings

DOC_AFTER = "## Intent rApp"
"""The IoKD section goes right after this section when the file has it."""


def make_report(config: ReportConfig, settings: RappSettings) -> dict[str, Any]:
    """Run Fig. 6 and Fig. 7 and write every output."""
    out = config.out_dir
    out.mkdir(parents=True, exist_ok=True)
    sets = evaluation_sets(config.dev)
    f6 = fig6(
        config.models_dir,
        config.families,
        sets,
        settings,
        fresh=config.fresh,
        progress=config.progress,
    )
    f6["seed_means"] = seed_means(f6)
    (out / "fig6.json").write_text(json.dumps(f6, indent=2) + "\n", encoding="utf-8")
    (out / "fig6.md").write_text(fig6_markdown(f6), encoding="utf-8")
    f7 = None
    if config.fig7 and "minilm" in config.families:
        f7 = fig7(
            config.data_dir,
            sets,
            settings.cache_dir,
            ensemble=config.fig7_ensemble,
            progress=config.progress,
        )
        (out / "fig7.json").write_text(json.dumps(f7, indent=2) + "\n", encoding="utf-8")
        fig7_plot(f7, out / "fig7.png")
    elif (out / "fig7.json").exists():  # no new study: the document keeps the last one
        f7 = json.loads((out / "fig7.json").read_text(encoding="utf-8"))
    met = targets(f6)
    if config.readme is not None:
        build_path = config.data_dir / BUILD_FILE
        build = json.loads(build_path.read_text(encoding="utf-8")) if build_path.exists() else None
        try:
            figures = str(out.resolve().relative_to(config.readme.resolve().parent))
        except ValueError:
            figures = str(out)
        section = SectionData(
            fig6=f6,
            fig7=f7,
            build=build,
            cards=shipped_cards(config.models_dir, config.families),
            differences=config_differences(f6["models"], config.models_dir),
            targets=met,
            figures=figures,
        )
        write_section(config.readme, iokd_section(section), after=DOC_AFTER)
    summary = {
        s: {label: rep["overall"] for label, rep in rows.items()} for s, rows in f6["sets"].items()
    }
    return {"fig6": f6, "fig7": f7, "fig6_summary": {"overall": summary, "targets": met}}
