"""``cgantool config show|schema``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cgantool.cli import app, guarded

config_app = typer.Typer(help="Show the resolved run config or its JSON Schema.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("show", help="Print the resolved config as TOML (stdout).\n\n"
                    "Example: [cyan]cgantool config show --preset contragan --set train.batch_size=32[/]")
@guarded
def show(
    preset: str = typer.Option("sngan", "--preset", "-p", help="The preset to start from."),
    config: Path = typer.Option(None, "--config", "-c", help="A TOML file layered over the preset."),
    set_: list[str] = typer.Option([], "--set", help="section.key=value (repeatable)."),
    data: str = typer.Option(None, "--data", "-d", help="The data, as `train --data` takes it: picks the preset's "
                             "recipe for its resolution (cifar10 → 32 px; a folder → its images' size)."),
    json_: bool = typer.Option(False, "--json", help="JSON instead of TOML."),
) -> None:
    from cgantool.errors import warn
    from cgantool.config import config_to_dict, resolve_config, to_toml
    from cgantool.data import parse_source

    flags, notes = {}, []
    if data is not None:
        flags["data.source"], flags["data.resolution"] = parse_source(data)
    cfg = resolve_config(preset, config, set_, flags, notes)
    for note in notes:
        warn(note)
    data = config_to_dict(cfg)
    typer.echo(json.dumps(data, indent=2) if json_ else to_toml(data), nl=json_)


@config_app.command("schema", help="Print the JSON Schema of the run config (stdout).")
@guarded
def schema() -> None:
    from cgantool.config import RunConfig

    typer.echo(json.dumps(RunConfig.model_json_schema(), indent=2))
