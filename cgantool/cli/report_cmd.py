"""``cgantool report`` and ``cgantool compare``."""

from __future__ import annotations

from pathlib import Path

import typer

from cgantool.cli import app, err_console, guarded
from cgantool.cli.json_out import HELP as JSON_HELP


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
    json_out: str = typer.Option(None, "--json", metavar="FILE", help=JSON_HELP),
) -> None:
    from cgantool.cli import json_out as jo

    jo.check_target(json_out)
    with jo.errors_to(json_out):
        _compare(run_dirs, metric, plot, json_out)


def _compare(run_dirs: list[Path], metric: str, plot: Path | None, json_out: str | None) -> None:
    from rich.console import Console
    from rich.table import Table

    from cgantool.cli import json_out as jo
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
    doc: dict = {"metric": metric, "key": key, "runs": [], "settings_that_differ": {}, "plot": None}
    for run in runs:
        steps = run.rows[-1]["step"] if run.rows else 0
        speed = run.series("img_per_s")[1]
        median_speed = sorted(speed)[len(speed) // 2] if speed else None
        cells = [run.name, str(run.config.get("preset", "?")), str(steps), fmt(run.final(key)), fmt(run.best(key))]
        if key != "d/adv":
            cells.append(fmt(run.final("d/adv")))
        table.add_row(*cells, fmt(median_speed))
        doc["runs"].append({"run": str(run.path), "name": run.name, "preset": run.config.get("preset"), "steps": steps,
                            "final": _number(run.final(key)), "best": _number(run.best(key)),
                            "final_d_adv": _number(run.final("d/adv")), "img_per_s": _number(median_speed),
                            "skipped_lines": run.bad_lines})
    console = err_console if jo.to_stdout(json_out) else Console()  # --json -: stdout holds only the JSON
    console.print(table)
    diffs = differing_settings(runs)
    doc["settings_that_differ"] = {k: list(v) for k, v in diffs.items()}  # one value per run, in "runs" order
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
        doc["plot"] = str(out)
    jo.write(doc, json_out)


def _number(value: float | None) -> float | None:
    """A metric for JSON: NaN (no valid value) as null, like the table's '-'."""
    import math

    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value
