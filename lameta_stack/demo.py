"""``make demo`` (``lameta-stack demo``): the closed loop on one machine, as deployed, with a
results table and plots.

Brings up the local stack (TLS broker with one user per component, the rApp behind mutual
TLS, the xApp with a signed policy, the emulator), lets the emulator issue ``--requests``
requests at ``--rate`` per second, watches every request, decision and outcome with the
read-only observer, stops everything and shows:

- a table: decisions, rejections and outcomes by code, fallbacks, lost and duplicated
  requests, the mean normalised score and the request-to-decision latency;
- ``score.png`` (the normalised score of each served request, in order, and its running
  mean), ``latency_cdf.png`` and ``chains.png`` (the chains chosen for two contrasting
  intents, drawn on the network).

Component logs and the demo's own log go to ``OUT/logs/``; nothing is printed but the
progress and the results.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lameta_stack.observe import Observer, StateKeeper, stack_observer
from lameta_stack.stack import ROOT, SHIPPED_POLICY, Stack, StackConfig, StackError
from servicekit import codec
from servicekit.logs import configure_logging

SCORE_HELP = (
    "normalised score: (score - random chain's) / (best chain's - random chain's) under the "
    "user's hidden true preferences; 1 = the exact optimum, 0 = a random feasible chain"
)


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs."""

    requests: int = 200
    rate: float = 10.0
    out: Path = ROOT / "runs" / "demo"
    broker: str = "auto"
    seed: int = 0
    policy: Path = SHIPPED_POLICY


def _contrasting_pair(observer: Observer) -> list:
    """Two served outcomes of different applications whose predicted vectors differ most."""
    with observer.lock:
        served = [
            outs[0]
            for outs in observer.resolving.values()
            if outs[0].code == "served" and len(outs[0].predicted) == 4
        ]
    best, pair = -1.0, []
    for i, a in enumerate(served):
        for b in served[i + 1 :]:
            if a.app != b.app:
                d = float(np.abs(np.subtract(a.predicted, b.predicted)).sum())
                if d > best:
                    best, pair = d, [a, b]
    return pair


def plot(observer: Observer, state: codec.StateArrays | None, out: Path) -> list[Path]:
    """The three figures of the run; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    with observer.lock:
        order = sorted(observer.requests.items(), key=lambda kv: kv[1])
        outcomes = {rid: outs[0] for rid, outs in observer.resolving.items()}
        decisions = {rid: ds[0] for rid, ds in observer.decisions.items()}
    scores = [
        outcomes[rid].normalized_score
        for rid, _ in order
        if rid in outcomes and outcomes[rid].code == "served"
    ]
    scores = [s for s in scores if np.isfinite(s)]
    if scores:
        fig, ax = plt.subplots(figsize=(7, 3.2))
        ax.plot(scores, ".", ms=3, alpha=0.5, label="request")
        run = np.cumsum(scores) / np.arange(1, len(scores) + 1)
        ax.plot(run, "-", lw=2, label=f"running mean ({run[-1]:.3f})")
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set(
            xlabel="served request (in order)",
            ylabel="normalised score",
            title="Decision quality over the run",
        )
        ax.legend(loc="lower right")
        fig.tight_layout()
        made.append(out / "score.png")
        fig.savefig(made[-1], dpi=120)
        plt.close(fig)
    lat = sorted(
        (t - ts) / 1e6
        for rid, ts in order
        if rid in decisions and ts > 0
        for t in [decisions[rid][0]]
    )
    if lat:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot(lat, np.arange(1, len(lat) + 1) / len(lat))
        ax.set_xscale("log")
        ax.set(
            xlabel="request -> decision (ms, as the observer sees it)",
            ylabel="share",
            title=f"Latency CDF (p50 {np.percentile(lat, 50):.1f} ms, "
            f"p99 {np.percentile(lat, 99):.1f} ms)",
        )
        ax.grid(alpha=0.3)
        fig.tight_layout()
        made.append(out / "latency_cdf.png")
        fig.savefig(made[-1], dpi=120)
        plt.close(fig)
    pair = _contrasting_pair(observer)
    if state is not None and pair:
        fig, ax = plt.subplots(figsize=(6.2, 6.2))
        xy = np.stack([state.x, state.y], axis=1)
        for u, v in state.edges:
            ax.plot(*xy[[u, v]].T, color="0.85", lw=0.5, zorder=1)
        cloud = np.asarray(state.cloud, dtype=bool)
        ax.scatter(*xy[~cloud].T, s=14, c="tab:blue", label="edge agent", zorder=2)
        ax.scatter(*xy[cloud].T, s=22, c="tab:purple", marker="s", label="cloud agent", zorder=2)
        for o, color in zip(pair, ("tab:red", "tab:green"), strict=False):
            pts = xy[list(o.chain)]
            vec = ", ".join(f"{w:.2f}" for w in o.predicted)
            text = o.prompt if len(o.prompt) < 48 else o.prompt[:45] + "..."
            ax.plot(
                *pts.T,
                "-o",
                color=color,
                lw=2.5,
                ms=8,
                zorder=3,
                label=f'{o.app}: "{text}"\n  s = [{vec}]',
            )
        ax.set(title="Chains chosen for two contrasting intents", xticks=[], yticks=[])
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.02), fontsize=8, frameon=False)
        fig.tight_layout()
        made.append(out / "chains.png")
        fig.savefig(made[-1], dpi=120)
        plt.close(fig)
    return made


def results_table(summary: dict, seconds: float):
    """The run's results as a rich table."""
    from rich.table import Table

    table = Table(
        title=f"Closed loop: {summary['requests']} requests in {seconds:.0f} s",
        show_header=True,
        header_style="bold",
    )
    table.add_column("what")
    table.add_column("value", justify="right")
    outcomes = summary["outcomes"]
    rows = [
        ("requests issued / settled", f"{summary['requests']} / {summary['settled']}"),
        ("served", str(outcomes.get("served", 0))),
        *(
            (f"  settled as {code}", str(n))
            for code, n in sorted(outcomes.items())
            if code != "served"
        ),
        *(
            (f"  xApp rejection: {why}", str(n))
            for why, n in sorted(summary["rejections_by_reason"].items())
        ),
        ("decisions on a fallback vector (rApp unavailable)", str(summary["fallbacks"])),
        ("lost (never settled) / settled twice", f"{summary['lost']} / {summary['duplicated']}"),
        ("mean normalised score", str(summary["mean_normalized_score"])),
        (
            "latency request -> decision p50 / p99 (ms)",
            f"{summary['p50_ms']} / {summary['p99_ms']}",
        ),
    ]
    for what, value in rows:
        table.add_row(what, value)
    return table


def run_demo(config: DemoConfig) -> int:
    """Run the demo; returns the exit code."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=False)
    out = Path(config.out)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    # Everything the demo itself logs goes to a file; the terminal gets progress and results.
    log_file = logs / "demo.log"
    stream = log_file.open("a")
    sys_stderr, sys.stderr = sys.stderr, stream
    configure_logging("INFO", "json")
    logging.getLogger().addHandler(logging.StreamHandler(stream))
    stack = Stack(out / "stack")
    holder: dict = {}
    t0 = time.monotonic()

    def start_observer(desc: dict) -> None:
        observer = stack_observer(desc, stack.password("observer"), "demo-observer")
        holder["state"] = StateKeeper(observer.client, observer.topics)
        holder["observer"] = observer.start()

    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("starting the stack", total=None)

            def stage(name: str) -> None:
                progress.update(task, description=f"starting: {name}")

            stack.up(
                StackConfig(
                    directory=stack.dir,
                    broker=config.broker,  # type: ignore[arg-type]
                    rate=config.rate,
                    requests=config.requests,
                    seed=config.seed,
                    policy=config.policy,
                ),
                progress=stage,
                on_broker=start_observer,
            )
            progress.update(task, description="stack ready", total=1, completed=1)
            observer: Observer = holder["observer"]
            loop = progress.add_task(
                f"closed loop ({config.rate:g} requests/s)", total=config.requests
            )
            deadline = time.monotonic() + config.requests / config.rate * 3 + 60
            while time.monotonic() < deadline:
                seen, settled = observer.counts()
                progress.update(loop, completed=min(settled, config.requests))
                if seen >= config.requests and settled >= seen:
                    break
                time.sleep(0.1)
            done = progress.add_task("plots and shutdown", total=None)
            summary = observer.summary()
            figures = plot(observer, holder["state"].state, out)
            observer.stop()
            holder.pop("observer")
            stack.down(grace=20)
            progress.update(done, total=1, completed=1)
    except StackError as exc:
        sys.stderr = sys_stderr
        console.print(f"[red]demo failed:[/red] {exc}")
        console.print(f"logs: {logs}")
        return 1
    finally:
        sys.stderr = sys_stderr
        if "observer" in holder:
            holder["observer"].stop()
        if stack.file.exists():
            stack.down(grace=10)
        stream.close()
    console.print(results_table(summary, time.monotonic() - t0))
    console.print(f"[dim]{SCORE_HELP}[/dim]")
    for fig in figures:
        console.print(f"figure: {fig}")
    console.print(f"logs:   {logs}")
    return 0 if summary["lost"] == 0 else 1
