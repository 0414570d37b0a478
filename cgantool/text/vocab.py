"""Word-level tokenizer and vocabulary of the builtin text encoder (stored in checkpoints as a word list)."""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch

from cgantool.errors import CgantoolError

PAD, UNK = "<pad>", "<unk>"
_TOKEN = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Lower-cased alphanumeric words: ``"A small, red circle!"`` → ``["a", "small", "red", "circle"]``."""
    return _TOKEN.findall(text.lower())


class Vocab:
    """Index 0 = padding, 1 = unknown, then the words of the training captions in sorted order."""

    def __init__(self, words: list[str]):
        self.words = [PAD, UNK] + [w for w in words if w not in (PAD, UNK)]
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, captions: Iterable[str]) -> Vocab:
        return cls(sorted({w for c in captions for w in tokenize(c)}))

    def __len__(self) -> int:
        return len(self.words)

    def unknown(self, text: str) -> list[str]:
        return [w for w in tokenize(text) if w not in self.index]

    def encode(self, texts: list[str], max_words: int, unknown: str = "error") -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids [B, T] (T = the longest caption, at most ``max_words``) and lengths [B] (>= 1).

        ``unknown``: "error" raises a CgantoolError naming the words the vocabulary lacks; "ignore" drops them;
        "unk" keeps them as the unknown token. A caption with no usable word is an error.
        """
        rows = []
        for text in texts:
            missing = self.unknown(text)
            if missing and unknown == "error":
                known = sorted(self.words[2:])
                from cgantool.registry import closest

                close = {m: closest(m, known) for m in missing}
                guesses = ", ".join(f"'{m}' → '{c}'?" for m, c in close.items() if c)
                raise CgantoolError(
                    f"words not in the model's vocabulary: {', '.join(repr(m) for m in dict.fromkeys(missing))} "
                    f"(prompt {text!r})",
                    hint=(f"{guesses + ' ' if guesses else ''}the model knows {len(known)} words: "
                          f"{' '.join(known[:60])}{' ...' if len(known) > 60 else ''}"),
                )
            ids = [self.index.get(w, 1) for w in tokenize(text) if w in self.index or unknown == "unk"]
            if not ids:
                raise CgantoolError(f"the prompt {text!r} has no word the model knows",
                                    hint="use words from the training captions")
            rows.append(ids[:max_words])
        width = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
        return ids, torch.tensor([len(r) for r in rows], dtype=torch.int64)
