"""``cgantool eval``."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from cgantool.cli import app, err_console, guarded
from cgantool.cli.json_out import HELP as JSON_HELP

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
    mode: str = typer.Option(None, "--mode", help="Inception input: clean (default) or legacy_tensorflow, as clean-fid's "
                             "modes of those names; pytorch_resize: clean-fid's legacy_pytorch resize on the same "
                             "network (formerly called legacy_pytorch)."),
    feature_extractor: str = typer.Option(None, "--feature-extractor", help="module:function returning a uint8→features callable."),
    inception_weights: str = typer.Option(None, "--inception-weights", help="Path of inception-2015-12-05.pt (or $CGANTOOL_INCEPTION_WEIGHTS)."),
    unverified_inception: bool = typer.Option(False, "--unverified-inception", help="Load Inception weights whose sha256 is not clean-fid's (runs the file's TorchScript code; results are labelled unverified). Or $CGANTOOL_UNVERIFIED_INCEPTION=1."),
    allow_download: bool = typer.Option(False, "--allow-download", help="Let the checkpoint's hf: text encoder be fetched from the Hugging Face hub (default: local files only)."),
    json_out: str = typer.Option(None, "--json", metavar="FILE", help=JSON_HELP),
    max_fid: float = typer.Option(None, "--max-fid", help="Exit 1 when FID is above this."),
    min_is: float = typer.Option(None, "--min-is", help="Exit 1 when IS is below this."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress of feature extraction and "
                                  "of the shapes probe's first training on stderr: a bar in a terminal, plain lines "
                                  "when stderr is a file or pipe (CI, nohup, SLURM)."),
    progress_every: float = typer.Option(10.0, "--progress-every", min=0.0, help="Seconds between plain progress "
                                         "lines when stderr is not a terminal."),
) -> None:
    args = dict(locals())
    from cgantool.cli import json_out as jo

    jo.check_target(json_out)  # before minutes of compute, not after; then a failure is written there too
    with jo.errors_to(json_out):
        result = _evaluate(**args)
    _gate(result, max_fid, min_is)


def _evaluate(*, checkpoint, metrics, fid, kid, is_, prdc, per_class, data, real, fake, protocol, num_samples,
              num_real, reference_seed, repeats, is_splits, standing_stats, batch_size, seed, no_ema, mode,
              feature_extractor, inception_weights, unverified_inception, allow_download, json_out, max_fid, min_is,
              device, progress, progress_every) -> dict:
    """What ``eval`` computes (the arguments are its options), the table on stderr and the ``--json`` output."""
    from cgantool.device import resolve_device
    from cgantool.errors import CgantoolError
    from cgantool.eval import evaluate
    from cgantool.eval.progress import showing
    from cgantool.eval.protocols import canonical_mode, get_protocol, parse_num_real
    from cgantool.eval.registry import check_metrics

    mode = canonical_mode(mode)  # unknown: a usage error; legacy_pytorch (renamed): pytorch_resize, with a warning
    if protocol is not None:
        get_protocol(protocol)  # an unknown name fails before anything is read
    real_count = parse_num_real(num_real)
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
    if real is not None and checkpoint is not None:
        raise CgantoolError("pass a checkpoint or --real/--fake, not both", hint="drop one of them")
    if real is None and checkpoint is None:
        raise CgantoolError("nothing to evaluate", hint="pass a checkpoint, or --real DIR --fake DIR")
    with showing(progress, progress_every):
        if real is not None:
            result = evaluate.evaluate_folders(real, fake, evaluate.options_for(protocol, **options))
        else:
            result = evaluate.evaluate_checkpoint(checkpoint, **options, data=data, ema=not no_ema,
                                                  allow_download=allow_download, protocol=protocol)
    _report(result, json_out)
    return result


def _gate(result: dict, max_fid: float | None, min_is: float | None) -> None:
    """``--max-fid`` / ``--min-is``: exit 1 (GateFailed) when missed; the result JSON is already written."""
    from cgantool.errors import GateFailed

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
    from cgantool.cli import json_out as jo

    jo.write(result, json_out)


