"""``cgantool eval``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from cgantool.cli import app, err_console, guarded

EXAMPLE = "cgantool eval runs/x/checkpoints/last.safetensors --metrics fid,kid,prdc --json -"


@app.command("eval", help="Score a checkpoint (or two image folders): FID, KID, IS, precision/recall/density/coverage.\n\n"
             f"Example: [cyan]{EXAMPLE}[/]\n\nWith no metric flag: FID and KID. Exit code 1 when --max-fid/--min-is is missed.")
@guarded
def eval_(
    checkpoint: Path = typer.Argument(None, help="A cgantool checkpoint (or use --real/--fake)."),
    metrics: str = typer.Option(None, "--metrics", help="Comma-separated metric names, e.g. fid,kid,prdc (with the "
                                "flags below: all of them); an unknown name lists the valid ones."),
    fid: bool = typer.Option(False, "--fid", help="Fréchet Inception distance (lower is better)."),
    kid: bool = typer.Option(False, "--kid", help="Kernel Inception distance, unbiased (lower is better)."),
    is_: bool = typer.Option(False, "--is", help="Inception Score (Inception extractor only)."),
    prdc: bool = typer.Option(False, "--prdc", help="Precision/recall (k=3), density/coverage (k=5)."),
    per_class: bool = typer.Option(False, "--per-class", help="FID per class (conditional models)."),
    data: str = typer.Option(None, "--data", help="Reference data (default: the checkpoint's dataset)."),
    real: Path = typer.Option(None, "--real", help="Folder of real images (with --fake)."),
    fake: Path = typer.Option(None, "--fake", help="Folder of generated images (with --real)."),
    protocol: str = typer.Option(None, "--protocol", help="A named FID protocol fixing mode, real/fake counts, "
                                 "reference split, repeats and IS splits: clean, legacy-tensorflow (Mimicry), "
                                 "studiogan, xmcgan. Explicit flags override its settings."),
    num_samples: int = typer.Option(None, "--num-samples", "-n", min=2, help="Generated images (default 10000)."),
    num_real: str = typer.Option(None, "--num-real", help="Reference images: a count or 'all' (default: as many "
                                 "as --num-samples), a seeded random, class-stratified subset of the data."),
    reference_seed: int = typer.Option(0, "--reference-seed", help="Seed of the reference subset."),
    repeats: int = typer.Option(None, "--repeats", min=1, help="Generated sets (seeds seed, seed+1...); metrics "
                                "are their mean (default 1)."),
    is_splits: int = typer.Option(None, "--is-splits", min=1, help="Splits of the Inception Score (default 10)."),
    standing_stats: int = typer.Option(0, "--standing-stats", min=0, help="Re-estimate G's batch-norm statistics "
                                       "over K generated batches first, on a copy (StudioGAN's -std_stat)."),
    batch_size: int = typer.Option(100, "--batch-size", "-b", min=1, help="Images per forward pass of G and of the extractor."),
    seed: int = typer.Option(0, "--seed", help="Seed of the generated images (fake image i depends only on (seed, i))."),
    no_ema: bool = typer.Option(False, "--no-ema", help="Evaluate the raw G instead of its EMA."),
    mode: str = typer.Option(None, "--mode", help="clean (default), legacy_tensorflow or legacy_pytorch (clean-fid)."),
    feature_extractor: str = typer.Option(None, "--feature-extractor", help="module:function returning a uint8→features callable."),
    inception_weights: str = typer.Option(None, "--inception-weights", help="Path of inception-2015-12-05.pt (or $CGANTOOL_INCEPTION_WEIGHTS)."),
    unverified_inception: bool = typer.Option(False, "--unverified-inception", help="Load Inception weights whose sha256 is not clean-fid's (runs the file's TorchScript code; results are labelled unverified). Or $CGANTOOL_UNVERIFIED_INCEPTION=1."),
    allow_download: bool = typer.Option(False, "--allow-download", help="Let the checkpoint's hf: text encoder be fetched from the Hugging Face hub (default: local files only)."),
    json_out: str = typer.Option(None, "--json", help="Write the result as JSON to FILE, or - for stdout."),
    max_fid: float = typer.Option(None, "--max-fid", help="Exit 1 when FID is above this."),
    min_is: float = typer.Option(None, "--min-is", help="Exit 1 when IS is below this."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
) -> None:
    from cgantool.device import resolve_device
    from cgantool.errors import CgantoolError, GateFailed
    from cgantool.eval import evaluate
    from cgantool.eval.registry import check_metrics

    from cgantool.eval.protocols import get_protocol, parse_num_real

    if mode is not None and mode not in ("clean", "legacy_tensorflow", "legacy_pytorch"):
        raise CgantoolError(f"unknown --mode '{mode}'", hint="use clean, legacy_tensorflow or legacy_pytorch")
    if protocol is not None:
        get_protocol(protocol)  # an unknown name fails before anything is read
    real_count = parse_num_real(num_real)
    _check_json_target(json_out)  # before minutes of compute, not after
    named = check_metrics((m.strip() for m in (metrics or "").split(",") if m.strip()), "--metrics")
    flags = tuple(m for m, on in (("fid", fid), ("kid", kid), ("is", is_), ("prdc", prdc)) if on)
    wanted = tuple(dict.fromkeys(flags + named)) or ("fid", "kid")
    if max_fid is not None and "fid" not in wanted:
        wanted = ("fid", *wanted)
    if min_is is not None and "is" not in wanted:
        wanted = (*wanted, "is")
    options = dict(metrics=wanted, num_samples=num_samples, batch_size=batch_size, seed=seed, mode=mode,
                   feature_extractor=feature_extractor or os.environ.get("CGANTOOL_FEATURE_EXTRACTOR", ""),
                   inception_weights=inception_weights, unverified_inception=unverified_inception,
                   per_class=per_class, device=resolve_device(device), num_real=real_count,
                   reference_seed=reference_seed, repeats=repeats, is_splits=is_splits, standing_stats=standing_stats)
    if (real is None) != (fake is None):
        raise CgantoolError("--real and --fake go together", hint="pass both folders, or a checkpoint")
    if real is not None:
        if checkpoint is not None:
            raise CgantoolError("pass a checkpoint or --real/--fake, not both", hint="drop one of them")
        result = evaluate.evaluate_folders(real, fake, evaluate.options_for(protocol, **options))
    else:
        if checkpoint is None:
            raise CgantoolError("nothing to evaluate", hint="pass a checkpoint, or --real DIR --fake DIR")
        result = evaluate.evaluate_checkpoint(checkpoint, **options, data=data, ema=not no_ema,
                                              allow_download=allow_download, protocol=protocol)
    _report(result, json_out)
    m = result["metrics"]
    if max_fid is not None and m["fid"] > max_fid:
        raise GateFailed(f"FID {m['fid']:.3f} is above --max-fid {max_fid}")
    if min_is is not None and m.get("is", float("-inf")) < min_is:
        raise GateFailed(f"IS {m.get('is', float('nan')):.3f} is below --min-is {min_is}")


def _report(result: dict, json_out: str | None) -> None:
    from rich.table import Table

    from cgantool.cli import _escape

    proto = (result.get("protocol") or {}).get("name")
    reps = f", mean of {result['repeats']} repeats" if result.get("repeats", 1) > 1 else ""
    table = Table(title=f"cgantool eval: {result['num_fake']} fake / {result['num_real']} real "
                  f"({result.get('reference_selection', 'all')}), {result['extractor']}, {result['mode']} mode{reps}"
                  f"{', protocol ' + proto if proto else ''}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result["metrics"].items():
        if isinstance(value, dict):
            for name, v in value.items():
                table.add_row(_escape(f"{key}[{name}]"), f"{v:.4f}")  # class names come from folders: no markup
        else:
            table.add_row(key, f"{value:.4f}")
    err_console.print(table)
    if json_out == "-":
        typer.echo(json.dumps(result, indent=2))
    elif json_out:
        from cgantool.files import atomic_write

        try:
            atomic_write(Path(json_out), lambda tmp: Path(tmp).write_text(json.dumps(result, indent=2) + "\n"))
        except OSError as e:
            raise _json_error(Path(json_out), e) from None


def _json_error(path: Path, e: OSError):
    from cgantool.errors import CgantoolError

    return CgantoolError(f"cannot write --json {path} ({e.strerror or e})",
                         hint="pass a file path in a writable directory, or --json - for stdout")


def _check_json_target(json_out: str | None) -> None:
    """Fail before the compute when ``--json PATH`` cannot be written: a directory, something that is not a
    regular file (a device, a pipe: the atomic rename would replace it), or a place no file can be created in."""
    import tempfile

    from cgantool.errors import CgantoolError

    if not json_out or json_out == "-":
        return
    path = Path(json_out)
    if path.is_dir():
        raise CgantoolError(f"--json {path} is a directory", hint=f"name a file, e.g. --json {path / 'eval.json'}, "
                            "or use --json - for stdout")
    if path.exists() and not path.is_file():
        raise CgantoolError(f"--json {path} is not a regular file", hint="name a file, or use --json - for stdout")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        raise CgantoolError(f"cannot write --json {path}: {ancestor} is not a directory",
                            hint="pass a file path in a writable directory, or --json - for stdout")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # as the final write would
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".probe"):
            pass
    except OSError as e:
        raise _json_error(path, e) from None
