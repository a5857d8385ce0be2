"""The documentation: every results table renders from its committed file, every page's
directive names a real table or settings class, and the README's links resolve inside
the repository."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))


def _hook(name: str):
    spec = importlib.util.spec_from_file_location(
        f"docs_hook_{name}", DOCS / "hooks" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


results = _hook("results")
generate = _hook("generate")


def _directives() -> list[tuple[str, str, str]]:
    found = []
    for page in PAGES:
        for m in generate.DIRECTIVE.finditer(page.read_text(encoding="utf-8")):
            found.append((page.relative_to(DOCS).as_posix(), m.group(1), m.group(2)))
    return found


def _tables(markdown: str) -> list[list[list[str]]]:
    """Every Markdown table in ``markdown``: its rows (header first), split into cells."""
    tables: list[list[list[str]]] = []
    previous = ""
    for line in markdown.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            if not previous.startswith("|"):
                tables.append([])
            cells = re.split(r"(?<!\\)\|", line.strip()[1:-1])
            tables[-1].append([c.strip() for c in cells])
        previous = line
    return tables


def _table_rows(markdown: str) -> list[list[str]]:
    """The rows (header first) of the only table in ``markdown``."""
    (table,) = _tables(markdown)
    return table


@pytest.mark.parametrize("name", sorted(results.RENDERERS))
def test_every_results_table_renders_from_its_committed_file(name: str) -> None:
    text = results.render(name, ROOT)
    tables = _tables(text)
    assert tables, f"{name}: no table"
    for header, *body in tables:
        assert body, f"{name}: a table without rows"
        assert all(len(row) == len(header) for row in body), f"{name}: ragged table"
    assert "nan" not in text.lower().split()


def test_every_results_table_is_on_a_page_and_every_directive_resolves() -> None:
    directives = _directives()
    used = {arg for _, kind, arg in directives if kind == "results"}
    assert used == set(results.RENDERERS), "a renderer no page shows, or a page names none"
    for page, kind, arg in directives:
        assert kind in ("results", "settings"), f"{page}: unknown directive {kind}"
        if kind == "settings":
            assert generate.settings_table(arg).count("\n") > 2, f"{page}: {arg}"


def test_a_directive_keeps_the_blank_line_after_it() -> None:
    """The heading after a generated table stays a heading (with its anchor)."""
    page = '{{ results("srl-fig9") }}\n\n## Next\n'
    out = generate.DIRECTIVE.sub(lambda m: "| a |\n|---|\n| 1 |", page)
    assert out.endswith("| 1 |\n\n## Next\n")


def test_the_tables_carry_the_committed_numbers() -> None:
    """Spot checks against the JSON files, so a renderer cannot drift from its data."""
    fig6 = json.loads((ROOT / "models/elam/report/fig6.json").read_text())
    iokd = fig6["sets"]["dev"]["minilm IoKD"]["overall"]["mse"]
    assert "| minilm IoKD |" in results.render("iokd-fig6", ROOT)
    assert f"{iokd:.5f}" in results.render("iokd-fig6", ROOT)
    srl = json.loads((ROOT / "models/policy/report/srl_report.json").read_text())
    share = srl["fig10_policy_selection"]["nearest_is_best_share"]
    assert f"{100 * share:.1f} %" in results.render("srl-fig10", ROOT)
    rows = _table_rows(results.render("srl-generalisation", ROOT))
    assert [r[0] for r in rows[1:]] == list(srl["generalisation"])
    timeline = json.loads(
        (ROOT / "models/negotiation/report/timeline_scripted-soft.json").read_text()
    )
    assert len(_table_rows(results.render("negotiation-timeline", ROOT))) - 1 == len(
        timeline["negotiations"]
    )
    fig7 = json.loads((ROOT / "models/elam/report/fig7.json").read_text())
    assert len(_table_rows(results.render("iokd-fig7", ROOT))) - 1 == len(fig7["points"])
    bench = json.loads((ROOT / "models/negotiation/report/bench_local.json").read_text())
    rows = _table_rows(results.render("negotiation-bench-local", ROOT))
    assert [(r[0], int(r[1])) for r in rows[1:]] == [
        (r["design"], r["agents"]) for r in bench["results"]
    ]
    assert [r[3] for r in rows[1:]] == [f"{r['mae']:.3f}" for r in bench["results"]]
    large = json.loads((ROOT / "models/policy/report/bench_large.json").read_text())
    rows = _table_rows(results.render("proposer-cost", ROOT).split("\n\n")[0])
    want = [(s, k) for s in large["sizes"] for k in s["per_k"]]
    assert len(rows) - 1 == len(want)
    for row, (size, k) in zip(rows[1:], want, strict=True):
        assert (row[0], row[1]) == (f"{size['agents']:,}", k)
        assert row[4].startswith(f"{size['methods'][f'srl_k{k}']['p50_ms']:.1f} / ")
    games = json.loads((ROOT / "models/negotiation/report/personalities_local.json").read_text())
    rows = _table_rows(results.render("negotiation-personalities-local", ROOT))
    assert len(rows) - 1 == len(rows[0]) - 1 == len(games["personalities"])
    assert rows[3][5].startswith(f"{games['mean'][2][4]:.2f}")  # disagreeable cost, toxic reach


def test_the_size_table_shows_every_decoding_of_the_committed_runs() -> None:
    """Greedy SRL stays beside each multi-start decoding the runs report."""
    rows = _table_rows(results.render("srl-sizes", ROOT))
    for n, path in results.SIZE_REPORTS.items():
        data = json.loads((ROOT / path).read_text())
        starts = data["_meta"].get("starts", [])
        mine = [r for r in rows[1:] if r[0] == str(n)]
        assert [r[1] for r in mine] == ["greedy", *(f"{m} starts" for m in starts)]
        for row, suffix in zip(mine, ["", *(f"_m{m}" for m in starts)], strict=True):
            assert row[2] == f"{data[f'srl{suffix}']['normalized_score']:.3f}"
            assert row[3] == f"{data[f'srl_general{suffix}']['normalized_score']:.3f}"
    assert any(r[1] == "4 starts" for r in rows[1:])  # the xApp's default is reported


LINK = re.compile(r"\]\(([^)\s]+)\)")
PATH = re.compile(r"`([a-z_]+/[\w./-]*)`")


def _targets(text: str) -> list[str]:
    links = [t for t in LINK.findall(text) if not re.match(r"[a-z]+:|#", t)]
    return [t.split("#", 1)[0] for t in links]


def test_readme_links_and_paths_resolve_inside_the_repository() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [t for t in _targets(text) if not (ROOT / t).exists()]
    assert not missing, f"README links that do not resolve: {missing}"
    tracked_dirs = {p.name for p in ROOT.iterdir() if p.is_dir()} - {"runs", "site"}
    paths = [p for p in PATH.findall(text) if p.split("/", 1)[0] in tracked_dirs]
    assert paths, "the README names no repository path"
    assert not [p for p in paths if not (ROOT / p).exists()]


@pytest.mark.parametrize("path", ["README.md", *(p.relative_to(ROOT).as_posix() for p in PAGES)])
def test_no_page_points_outside_the_repository_or_names_an_issue(path: str) -> None:
    text = (ROOT / path).read_text(encoding="utf-8")
    outside = [
        t
        for t in _targets(text)
        if not (ROOT / path).parent.joinpath(t).resolve().is_relative_to(ROOT)
    ]
    assert "../shared" not in text and not outside, f"{path} links outside the repository"
    assert not re.search(r"\(issue \d+\)|\bissue #?\d+\b", text, re.I), f"{path} names an issue"
