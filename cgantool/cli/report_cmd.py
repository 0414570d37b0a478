"""``cgantool report`` and ``cgantool compare``."""

from __future__ import annotations

from pathlib import Path

import typer

from cgantool.cli import app, err_console, guarded


@app.command(help="Write a run's report: loss and metric plots, sample grids over training, config, speed.\n\n"
             "Example: [cyan]cgantool report runs/demo --out report.html --png[/]")
@guarded
def report(
    run_dir: Path = typer.Argument(..., help="A run directory (with metrics.jsonl)."),
    out: Path = typer.Option(None, "--out", "-o", help="HTML file. Default: RUN/report.html."),
    png: bool = typer.Option(False, "--png", help="Also write the figures as PNGs into RUN/report/."),
) -> None:
    from cgantool.report import build_report, read_run

    run = read_run(run_dir)
    written = build_report(run, out or run_dir / "report.html", run_dir / "report" if png else None)
    if run.bad_lines:
        err_console.print(f"note: skipped {run.bad_lines} damaged line(s) in {run_dir / 'metrics.jsonl'}")
    for path in written:
        err_console.print(f"wrote {path}")


@app.command(help="Compare runs: final/best metrics, the settings that differ, and an overlay plot.\n\n"
             "Example: [cyan]cgantool compare runs/contragan runs/contragan-infonce --metric fid[/]")
@guarded
def compare(
    run_dirs: list[Path] = typer.Argument(..., help="Two or more run directories."),
    metric: str = typer.Option("fid", "--metric", help="Metric to overlay (eval/<metric>, or a loss key like d/adv)."),
    plot: Path = typer.Option(None, "--plot", help="Overlay plot PNG. Default: compare-<metric>.png beside the first run."),
) -> None:
    from rich.console import Console
    from rich.table import Table

    from cgantool.errors import CgantoolError
    from cgantool.report import differing_settings, fmt, plot_keys, read_run

    if len(run_dirs) < 2:
        raise CgantoolError("compare needs at least two runs", hint="cgantool compare RUN_A RUN_B")
    runs = [read_run(p) for p in run_dirs]
    key = metric if "/" in metric or metric in ("img_per_s",) else f"eval/{metric}"
    table = Table(title="cgantool compare")
    table.add_column("run", style="bold")
    table.add_column("preset")
    table.add_column("steps", justify="right")
    table.add_column(f"final {metric}", justify="right")
    table.add_column(f"best {metric}", justify="right")
    if key != "d/adv":
        table.add_column("final d/adv", justify="right")
    table.add_column("img/s", justify="right")
    for run in runs:
        steps = str(run.rows[-1]["step"]) if run.rows else "0"
        speed = run.series("img_per_s")[1]
        cells = [run.name, str(run.config.get("preset", "?")), steps, fmt(run.final(key)), fmt(run.best(key))]
        if key != "d/adv":
            cells.append(fmt(run.final("d/adv")))
        table.add_row(*cells, fmt(sorted(speed)[len(speed) // 2] if speed else None))
    console = Console()
    console.print(table)
    diffs = differing_settings(runs)
    if diffs:
        t2 = Table(title="settings that differ")
        t2.add_column("key", style="bold")
        for run in runs:
            t2.add_column(run.name)
        for k, values in diffs.items():
            t2.add_row(k, *[str(v) for v in values])
        console.print(t2)
    for run in runs:
        if run.bad_lines:
            err_console.print(f"note: skipped {run.bad_lines} damaged line(s) in {run.path / 'metrics.jsonl'}")
    out = plot or run_dirs[0].parent / f"compare-{metric.replace('/', '_')}.png"
    if plot_keys(runs, [key], f"{metric} over training", out) is None:
        err_console.print(f"note: no run recorded '{key}'; no plot written")
    else:
        err_console.print(f"wrote {out}")
