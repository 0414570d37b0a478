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
    from cgantool.recipes import preset_path, preset_recipes, read_toml

    console = Console()
    if name is not None:
        recipes = preset_recipes(read_toml(preset_path(name)))
        cfg = resolve_config(name)
        lines = f"{name}: {preset_header(name)}".splitlines()
        if recipes:
            lines += ["", "Recipes (picked by resolution: data.resolution, or the data's image size):"]
            lines += [f"  {r.resolution:>4} px  {r.name}: {r.source}" + ("  [only when asked]" if r.only_when_asked
                                                                       else "") for r in recipes]
            lines += [f"Shown below: the {cfg.data.resolution} px config; `cgantool config show --preset {name} "
                      "--set data.resolution=RES` shows another."]
        about = "".join(f"# {line}".rstrip() + "\n" for line in lines)
        typer.echo(about + to_toml(config_to_dict(cfg)), nl=False)  # stdout is valid TOML (the header a comment)
        return
    table = Table(title="cgantool presets")
    table.add_column("preset", no_wrap=True, style="bold")
    for col in ("backbone", "adversarial", "contrastive terms", "conditioning", "recipes (px)", "about"):
        table.add_column(col)
    for preset in preset_names():
        cfg = resolve_config(preset)
        terms = [f"{k} ×{v['weight']}" for k, v in config_to_dict(cfg)["loss"].items() if isinstance(v, dict) and v.get("weight", 0) > 0]
        header = preset_header(preset)
        about = header.split(")")[0] + ")" if ")" in header else header.split("\n")[0]  # "Name (authors, venue)"
        scales = ", ".join(str(r.resolution) for r in preset_recipes(read_toml(preset_path(preset)))) or "-"
        table.add_row(preset, cfg.model.arch, cfg.loss.adversarial, ", ".join(terms) or "-", cfg.model.conditioning,
                      scales, about)
    console.print(table)
