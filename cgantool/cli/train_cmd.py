"""``cgantool train``."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from cgantool.cli import app, err_console, guarded

EXAMPLE = "cgantool train --preset contragan --data shapes:32 --steps 2000 --out runs/contragan-shapes"


@app.command(help=f"Train a preset on a dataset.\n\nExample: [cyan]{EXAMPLE}[/]")
@guarded
def train(
    preset: str = typer.Option(None, "--preset", "-p", help="Preset name (see `cgantool presets`). Default: sngan."),
    data: str = typer.Option(None, "--data", "-d", help="shapes, an image folder, cifar10, cifar100, captions .jsonl or coco:FILE.json; a :RES suffix sets the resolution (else the recipe picks it from the data)."),
    config: Path = typer.Option(None, "--config", "-c", help="A TOML file layered over the preset."),
    set_: list[str] = typer.Option([], "--set", help="Override one key: section.key=value (repeatable)."),
    out: Path = typer.Option(None, "--out", "-o", help="Run directory. Default: runs/<preset>-<data>-<time>."),
    steps: int = typer.Option(None, "--steps", help="Total G steps of the run (train.steps)."),
    batch_size: int = typer.Option(None, "--batch-size", "-b", help="train.batch_size"),
    seed: int = typer.Option(None, "--seed", help="train.seed"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    force: bool = typer.Option(False, "--force", help="Replace an existing run directory."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress on stderr: a bar in a "
                                  "terminal, plain lines when stderr is a file or pipe (nohup, SLURM, CI)."),
    progress_every: float = typer.Option(30.0, "--progress-every", min=0.0, help="Seconds between plain progress "
                                         "lines when stderr is not a terminal."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the generator (for GPUs; slow start; no gain measured on CPUs)."),
    channels_last: bool = typer.Option(None, "--channels-last/--no-channels-last", help="NHWC memory format for G, D "
                                       "and images. Default: on for CPUs (measured 1.6-2.2x faster), off on GPUs."),
    allow_download: bool = typer.Option(False, "--allow-download", help="On --resume, let the run's hf: text encoder "
                                        "be fetched from the Hugging Face hub (default: local files only)."),
    inception_weights: str = typer.Option(None, "--inception-weights", help="Path of inception-2015-12-05.pt for "
                                          "the in-training evaluation, eval.every (or $CGANTOOL_INCEPTION_WEIGHTS)."),
) -> None:
    import os

    from cgantool.config import resolve_config
    from cgantool.data import parse_source
    from cgantool.data.sources import absolute_paths
    from cgantool.engine.loop import RunOptions
    from cgantool.engine.loop import train as run_train
    from cgantool.errors import CgantoolError, warn

    if resume and force:
        raise CgantoolError("--resume and --force contradict each other", hint="--resume continues a run, --force replaces it")
    if resume and out is None:
        raise CgantoolError("--resume needs the run directory", hint="pass --out RUN_DIR")
    flags: dict = {"train.steps": steps, "train.batch_size": batch_size, "train.seed": seed}
    if data is not None:
        source, resolution = parse_source(data)
        flags["data.source"] = source
        flags["data.resolution"] = resolution
    notes: list[str] = []  # the recipe choice's warning (a new run only)
    if resume:  # the run's own config, with this command's --config / --set / flags layered on (and checked)
        from cgantool.config import config_to_dict, flatten, layer_config, validate_config
        from cgantool.engine import run_dir

        stored, ckpt = run_dir.stored_config(out)
        overrides = layer_config({}, config, set_, {**flags, "preset": preset})
        cfg = validate_config(layer_config(config_to_dict(stored), config, set_, {**flags, "preset": preset}))
        named = set(flatten(overrides))
        if named & {"data.source", "data.root", "data.image_root"}:  # paths this command names: from this directory
            cfg = cfg.model_copy(update={"data": absolute_paths(cfg.data)})
        run_dir.check_resume(stored, cfg, ckpt, named=named)
    else:  # paths are recorded absolute: the run resumes and samples from any working directory
        cfg = resolve_config(preset or "sngan", config, set_, flags, notes)
        cfg = cfg.model_copy(update={"data": absolute_paths(cfg.data)})
    rank = int(os.environ.get("RANK", "0"))
    if out is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise CgantoolError("multi-process runs need an explicit --out", hint="e.g. torchrun ... -m cgantool train --out runs/x")
    if out is None:
        out = Path("runs") / f"{cfg.preset}-{Path(cfg.data.source).name}-{time.strftime('%Y%m%d-%H%M%S')}"
    from cgantool.cli import _escape
    from cgantool.engine.run_dir import check_out_path

    check_out_path(out)
    if rank == 0:
        recipe = f", recipe {_escape(cfg.recipe)}" if cfg.recipe else ""
        err_console.print(f"[bold]cgantool train[/] preset [cyan]{_escape(cfg.preset)}[/] on "
                          f"[cyan]{_escape(str(cfg.data.source))}[/] ({cfg.data.resolution} px{recipe}) → "
                          f"{_escape(str(out))}")
        for note in notes:
            warn(note)
    last = run_train(cfg, RunOptions(out=out, device=device, resume=resume, force=force, progress=progress,
                                     console=err_console, compile=compile_, channels_last=channels_last,
                                     hold_signals=True, allow_download=allow_download,
                                     progress_every=progress_every, inception_weights=inception_weights))
    if rank != 0:
        return
    err_console.print(f"done: checkpoint {_escape(str(last))}")
    err_console.print(f"      samples    {_escape(str(out / 'samples'))}")
    err_console.print(f"      metrics    {_escape(str(out / 'metrics.jsonl'))}")
