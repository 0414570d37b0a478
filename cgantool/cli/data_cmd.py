"""``cgantool data export``."""

from __future__ import annotations

from pathlib import Path

import typer

from cgantool.cli import app, err_console, guarded

data_app = typer.Typer(help="Work with datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("export", help="Write a dataset as an image folder (one sub-folder per class) plus captions.jsonl.\n\n"
                  "Example: [cyan]cgantool data export shapes:32 out/shapes --num-images 2000[/]")
@guarded
def export(
    source: str = typer.Argument(..., help="A --data source, e.g. shapes, shapes:64, shapes-multi."),
    out: Path = typer.Argument(..., help="Folder to write."),
    num_images: int = typer.Option(10000, "--num-images", "-n", min=1, help="Images for shapes."),
    seed: int = typer.Option(0, "--seed", help="Seed for shapes."),
    resolution: int = typer.Option(None, "--resolution", help="Resolution (default 32 or the :RES suffix)."),
    force: bool = typer.Option(False, "--force", help="Write into a non-empty folder."),
) -> None:
    import json

    from cgantool.config import DataConfig
    from cgantool.data import load_dataset, parse_source
    from cgantool.errors import CgantoolError
    from cgantool.files import check_output
    from cgantool.sampling import save_png

    name, res = parse_source(source)
    cfg = DataConfig(source=name, resolution=resolution or res or 32, num_images=num_images, shapes_seed=seed)
    check_output(out, folder=True, force=force, what="output folder")  # before any work: not after a dataset decode
    data = load_dataset(cfg)
    width = len(str(len(data) - 1))
    lines = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for i in range(len(data)):
            sub = data.class_names[int(data.labels[i])] if data.labels is not None and data.class_names else ""
            rel = Path(sub) / f"{i:0{width}d}.png" if sub else Path(f"{i:0{width}d}.png")
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            save_png(data.images[i], out / rel)
            for caption in (data.captions[i] if data.captions else []):
                lines.append(json.dumps({"file": rel.as_posix(), "caption": caption}))
        if lines:
            (out / "captions.jsonl").write_text("\n".join(lines) + "\n")
    except OSError as e:
        raise CgantoolError(f"cannot write to {out}: {e.strerror or e}" + (f" ({e.filename})" if e.filename else ""),
                            hint="check the free space and permissions of the output folder") from None
    err_console.print(f"wrote {len(data)} images{' and captions.jsonl' if lines else ''} to {out}")
