"""Everything a text-conditional run needs before step 1: the encoder and the dataset's feature bank."""

from __future__ import annotations

from collections.abc import Callable

import torch

from cgantool.errors import DataError
from cgantool.text.bank import TextBank
from cgantool.text.encoders import HFText, MiniLMText, TextEncoder


def build_encoder(cfg, dataset, device: torch.device, log: Callable[[str], None] | None = None) -> TextEncoder:
    spec = cfg.text.encoder
    if spec == "builtin":
        from cgantool.text.pretrain import pretrain_builtin, pretrain_steps

        steps, why = pretrain_steps(cfg)
        return pretrain_builtin(dataset, cfg.text, seed=cfg.train.seed, device=device, log=log, steps=steps, why=why)
    if spec == "minilm":
        return MiniLMText(max_words=cfg.text.max_words).to(device)
    return HFText(spec[3:], max_words=cfg.text.max_words).to(device)


def prepare_text(cfg, dataset, device: torch.device, log: Callable[[str], None] | None = None) -> tuple[TextEncoder, TextBank]:
    if dataset.captions is None:
        raise DataError(
            f"preset '{cfg.preset}' is text-to-image but the data '{dataset.source}' has no captions",
            hint="use --data shapes, a captions .jsonl ({\"file\": ..., \"caption\": ...} per line) or coco:CAPTIONS.json",
        )
    encoder = build_encoder(cfg, dataset, device, log)
    return encoder, TextBank(dataset.captions, encoder, device)
