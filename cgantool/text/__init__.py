"""Text for text-to-image presets: tokenizer/vocabulary, encoders (builtin / minilm / hf), the feature bank."""

from cgantool.text.cond import TextCond
from cgantool.text.encoders import BuiltinText, HFText, MiniLMText, TextEncoder, from_info
from cgantool.text.vocab import Vocab, tokenize

__all__ = ["BuiltinText", "HFText", "MiniLMText", "TextCond", "TextEncoder", "Vocab", "from_info", "tokenize"]
