"""``cgantool presets [NAME]``."""

from __future__ import annotations

import typer

from cgantool.cli import app, guarded


@app.command(help="List the presets, or show one preset's resolved config.\n\nExample: [cyan]cgantool presets contragan[/]")
@guarded
def presets(name: str = typer.Argument(None, help="A preset to show in full.")) -> None:
    from rich.console import Console
    from rich.table import Table

    from cgantool.config import config_to_dict, preset_header, preset_names, resolve_config, to_toml

    console = Console()
    if name is not None:
        cfg = resolve_config(name)
        about = "".join(f"# {line}".rstrip() + "\n" for line in f"{name}: {preset_header(name)}".splitlines())
        typer.echo(about + to_toml(config_to_dict(cfg)), nl=False)  # stdout is valid TOML (the header a comment)
        return
    table = Table(title="cgantool presets")
    table.add_column("preset", no_wrap=True, style="bold")
    for col in ("backbone", "adversarial", "contrastive terms", "conditioning", "about"):
        table.add_column(col)
    for preset in preset_names():
        cfg = resolve_config(preset)
        terms = [f"{k} ×{v['weight']}" for k, v in config_to_dict(cfg)["loss"].items() if isinstance(v, dict) and v.get("weight", 0) > 0]
        header = preset_header(preset)
        about = header.split(")")[0] + ")" if ")" in header else header.split("\n")[0]  # "Name (authors, venue)"
        table.add_row(preset, cfg.model.arch, cfg.loss.adversarial, ", ".join(terms) or "-", cfg.model.conditioning, about)
    console.print(table)
