"""Run reports: read a run directory, plot its losses and metrics, and compare runs.

``metrics.jsonl`` has one JSON object per line: training rows (``step``, ``d/<term>``, ``g/<term>``,
``lr_g``, ``lr_d``, ``img_per_s``) and evaluation rows (``eval/<metric>``). Damaged lines are skipped and
counted, never fatal.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cgantool.errors import DataError


@dataclass
class RunRecord:
    path: Path
    rows: list[dict[str, Any]]
    bad_lines: int
    config: dict[str, Any] = field(default_factory=dict)
    grids: list[Path] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    def series(self, key: str) -> tuple[list[int], list[float]]:
        pts = [(r["step"], r[key]) for r in self.rows if key in r and isinstance(r[key], (int, float))]
        return [p[0] for p in pts], [float(p[1]) for p in pts]

    def keys(self, prefix: str) -> list[str]:
        return sorted({k for r in self.rows for k in r if k.startswith(prefix)})

    def final(self, key: str) -> float | None:
        _, ys = self.series(key)
        return ys[-1] if ys else None

    def best(self, key: str) -> float | None:
        _, ys = self.series(key)
        if not ys:
            return None
        return max(ys) if key.endswith(("is", "accuracy", "precision", "recall", "density", "coverage")) else min(ys)


def read_run(path: str | Path) -> RunRecord:
    """Load a run directory; a missing metrics file is an error, damaged lines are counted."""
    import tomllib

    run = Path(path)
    metrics = run / "metrics.jsonl"
    if not metrics.exists():
        raise DataError(f"{run} has no metrics.jsonl", hint="pass a run directory written by `cgantool train`")
    rows, bad = [], 0
    for line in metrics.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or "step" not in row:
                raise ValueError
            rows.append(row)
        except ValueError:
            bad += 1
    config = {}
    if (run / "config.toml").exists():
        try:
            config = tomllib.loads((run / "config.toml").read_text())
        except tomllib.TOMLDecodeError:
            config = {}
    grids = sorted((run / "samples").glob("step_*.png")) if (run / "samples").is_dir() else []
    return RunRecord(path=run, rows=rows, bad_lines=bad, config=config, grids=grids)


def smooth(values: list[float], weight: float = 0.9) -> list[float]:
    """Debiased exponential moving average (TensorBoard's smoothing) for noisy GAN losses."""
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight**i))
    return out


def _figure(width: float = 6.4, height: float = 3.6):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=100)


def _save(fig, path: Path | None) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    data = buf.getvalue()
    if path is not None:
        path.write_bytes(data)
    return data


def plot_losses(run: RunRecord, path: Path | None = None) -> bytes | None:
    keys = run.keys("d/") + run.keys("g/")
    if not keys:
        return None
    fig, axes = _figure(9.0, 3.6)
    fig.clf()
    ax_d, ax_g = fig.subplots(1, 2)
    for ax, prefix in ((ax_d, "d/"), (ax_g, "g/")):
        for key in (k for k in keys if k.startswith(prefix)):
            xs, ys = run.series(key)
            line, = ax.plot(xs, ys, alpha=0.25)
            ax.plot(xs, smooth(ys), color=line.get_color(), label=key)
        ax.set_title("discriminator losses" if prefix == "d/" else "generator losses")
        ax.set_xlabel("G step")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_keys(runs: list[RunRecord], keys: list[str], title: str, path: Path | None = None) -> bytes | None:
    lines = [(run, key) for run in runs for key in keys if run.series(key)[0]]
    if not lines:
        return None
    fig, ax = _figure()
    for run, key in lines:
        xs, ys = run.series(key)
        label = key if len(runs) == 1 else f"{run.name}: {key}"
        ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=label)
    ax.set_title(title)
    ax.set_xlabel("G step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _img(data: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def build_report(run: RunRecord, out_html: Path | None, png_dir: Path | None) -> list[Path]:
    """Write the HTML report and/or PNG figures; returns the files written."""
    written: list[Path] = []
    if png_dir is not None:
        png_dir.mkdir(parents=True, exist_ok=True)
    figures = {
        "losses": plot_losses(run, png_dir / "losses.png" if png_dir else None),
        "lr": plot_keys([run], ["lr_g", "lr_d"], "learning rates", png_dir / "lr.png" if png_dir else None),
        "metrics": plot_keys([run], run.keys("eval/"), "metrics", png_dir / "metrics.png" if png_dir else None),
        "speed": plot_keys([run], ["img_per_s"], "training speed (images/s)", png_dir / "speed.png" if png_dir else None),
    }
    if png_dir is not None:
        written += [png_dir / f"{name}.png" for name, data in figures.items() if data is not None]
    if out_html is not None:
        speeds = run.series("img_per_s")[1]
        steps = [r["step"] for r in run.rows]
        times = [r["time"] for r in run.rows if "time" in r]
        summary = [
            ("steps logged", f"{steps[-1] if steps else 0}"),
            ("median img/s", f"{sorted(speeds)[len(speeds) // 2]:.1f}" if speeds else "-"),
            ("wall time", f"{times[-1] / 60:.1f} min" if times else "-"),
        ]
        for key in run.keys("eval/"):
            summary.append((f"best {key[5:]}", f"{run.best(key):.4g}"))
        parts = [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>cgantool report: {html.escape(run.name)}</title>",
            "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
            "img{max-width:100%}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}"
            ".strip{display:flex;gap:8px;overflow-x:auto}.strip figure{margin:0}pre{background:#f5f5f5;padding:1em}"
            ".note{background:#fff3cd;padding:.5em 1em}</style></head><body>",
            f"<h1>{html.escape(run.name)}</h1>",
            f"<p>preset <b>{html.escape(str(run.config.get('preset', '?')))}</b> on "
            f"<b>{html.escape(str(run.config.get('data', {}).get('source', '?')))}</b></p>",
        ]
        if run.bad_lines:
            parts.append(f"<p class='note'>{run.bad_lines} damaged line(s) in metrics.jsonl were skipped.</p>")
        parts.append("<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in summary) + "</table>")
        for name, title in (("losses", "Losses"), ("metrics", "Metrics"), ("lr", "Learning rates"), ("speed", "Speed")):
            if figures[name] is not None:
                parts.append(f"<h2>{title}</h2>{_img(figures[name], title)}")
        if run.grids:
            parts.append("<h2>Samples over training</h2><div class='strip'>")
            for grid in run.grids:
                parts.append(f"<figure>{_img(grid.read_bytes(), grid.stem)}<figcaption>{html.escape(grid.stem)}</figcaption></figure>")
            parts.append("</div>")
        if run.config:
            from cgantool.config import to_toml

            parts.append(f"<h2>Config</h2><pre>{html.escape(to_toml(run.config))}</pre>")
        parts.append("</body></html>")
        from cgantool.files import atomic_write

        atomic_write(out_html, lambda tmp: Path(tmp).write_text("\n".join(parts)))
        written.append(out_html)
    return written


def differing_settings(runs: list[RunRecord]) -> dict[str, list[Any]]:
    from cgantool.config import flatten

    flat = [flatten(r.config) for r in runs]
    keys = sorted(set().union(*flat)) if flat else []
    return {k: [f.get(k) for f in flat] for k in keys if len({json.dumps(f.get(k)) for f in flat}) > 1}


def fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4g}"
