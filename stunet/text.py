"""Text: a word tokenizer over a closed vocabulary, and a small transformer encoder.

The vocabulary is a parameter (the shapes world supplies one; ``vocab.json`` in a
checkpoint stores it). Words outside it are *reported* to the caller, never silently
dropped: ``Tokenizer.encode`` returns them, and ``stunet generate`` / the studio show them.
A prompt none of whose kept words carries content (all unknown, or only stopwords such as "a")
is refused by ``Tokenizer.check`` (``PromptError``): the one rule the library, the command line
and the studio apply.
Position 0 of every sequence is a learned ``<cls>`` token: its output is the pooled
text vector, and the empty prompt (``<cls>`` alone) is the learned unconditional
prompt used by classifier-free guidance.
"""
from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .layers import sinusoidal

PAD, CLS = "<pad>", "<cls>"
SPECIALS = (PAD, CLS)
_WORD = re.compile(r"[^\s.,;:!?\"'()\[\]{}]+")
# Function words that say nothing about what to draw: a vocabulary may hold some ("a", "the"), but a
# prompt whose only known words are these is refused like one with no known word (``Tokenizer.check``).
STOPWORDS = frozenset({"a", "an", "the", "is", "are", "and", "or", "of", "to", "in", "on", "at", "with", "it",
                       "its", "this", "that", "some"})


def _listed(words: list[str], budget: int = 50, longest: int = 20) -> str:
    """Distinct words, comma-separated, each cut to ``longest`` characters, the list to about ``budget``."""
    out, n = [], 0
    ws = [w if len(w) <= longest else w[: longest - 1] + "…" for w in dict.fromkeys(words)]
    for w in ws:
        if out and n + len(w) > budget:
            return ", ".join(out) + f" and {len(ws) - len(out)} more"
        out.append(w)
        n += len(w) + 2
    return ", ".join(out)


class PromptError(ValueError):
    """A prompt the model cannot draw from: none of its kept words carries content. The message names
    the unknown words and the vocabulary."""


@dataclass(frozen=True)
class Encoded:
    ids: list[int]          # <cls> first, then known words, truncated to max_words
    words: list[str]        # the known words kept, aligned with ids[1:]
    unknown: list[str]      # words not in the vocabulary (reported, not used)
    truncated: list[str]    # known words cut off by max_words

    @property
    def content(self) -> list[str]:
        """The kept words that say what to draw (``words`` without STOPWORDS)."""
        return [w for w in self.words if w not in STOPWORDS]


class Tokenizer:
    def __init__(self, words: list[str] | tuple[str, ...], max_words: int = 16):
        words = [w for w in words if w not in SPECIALS]
        if len(set(words)) != len(words):
            raise ValueError("vocabulary has duplicate words")
        self.vocab = list(SPECIALS) + list(words)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.max_words = max_words

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def words(self) -> list[str]:
        return self.vocab[len(SPECIALS):]

    @staticmethod
    def split(prompt: str) -> list[str]:
        text = unicodedata.normalize("NFKC", prompt).lower()
        return _WORD.findall(text)

    def encode(self, prompt: str) -> Encoded:
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
        known, unknown = [], []
        for w in self.split(prompt):
            (known if w in self.index else unknown).append(w)
        kept, cut = known[: self.max_words], known[self.max_words:]
        return Encoded([self.index[CLS]] + [self.index[w] for w in kept], kept, unknown, cut)

    def check(self, prompt: str) -> Encoded:
        """``encode(prompt)``, or ``PromptError`` when none of its kept words carries content (every word
        unknown, or the known ones all STOPWORDS: "a zebra dancing"). The message names the unknown words
        and the vocabulary."""
        enc = self.encode(prompt)
        if enc.content:
            return enc
        if not enc.words and not enc.unknown:
            why = "The prompt has no words."
        elif not enc.words:
            why = "None of the prompt's words are known to the model, so it would ignore them all."
        else:
            why = (f"None of the prompt's words says what to draw: the only known ones "
                   f"({', '.join(dict.fromkeys(enc.words))}) carry no content.")
        if enc.unknown:
            why += f" Unknown: {_listed(enc.unknown)}."
        raise PromptError(f"{why} It knows: {', '.join(self.words)}.")

    def batch(self, prompts: list[str]) -> tuple[torch.Tensor, list[Encoded]]:
        """Token ids (b, 1 + max_words), padded with <pad>=0, and the per-prompt encodings."""
        enc = [self.encode(p) for p in prompts]
        ids = torch.zeros(len(prompts), 1 + self.max_words, dtype=torch.long)
        for i, e in enumerate(enc):
            ids[i, : len(e.ids)] = torch.tensor(e.ids)
        return ids, enc

    # -- files
    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"words": self.words, "max_words": self.max_words}, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "Tokenizer":
        d = json.loads(Path(path).read_text())
        if not isinstance(d, dict) or not isinstance(d.get("words"), list) \
                or not all(isinstance(w, str) for w in d["words"]) or not isinstance(d.get("max_words"), int):
            raise ValueError(f"{Path(path).name}: expected {{'words': [str, ...], 'max_words': int}}")
        return cls(d["words"], d["max_words"])


@dataclass
class TextEncoding:
    tokens: torch.Tensor    # b l e   (l = 1 + max_words; position 0 is <cls>)
    mask: torch.Tensor      # b l     True for real tokens
    pooled: torch.Tensor    # b e

    def __getitem__(self, idx) -> "TextEncoding":
        return TextEncoding(self.tokens[idx], self.mask[idx], self.pooled[idx])

    @staticmethod
    def cat(items: list["TextEncoding"]) -> "TextEncoding":
        return TextEncoding(torch.cat([i.tokens for i in items]), torch.cat([i.mask for i in items]),
                            torch.cat([i.pooled for i in items]))


class TextEncoder(nn.Module):
    def __init__(self, vocab_size: int, dim: int, layers: int, max_words: int, head_dim: int = 32):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        # computed on the CPU even inside a meta-device build (checkpoint loading counts shapes that way;
        # arange on meta runs a Python reference that imports torch._dynamo, seconds on a first load)
        self.register_buffer("pos", sinusoidal(torch.arange(1 + max_words, device="cpu"), dim), persistent=False)
        heads = max(1, dim // head_dim)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
            for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, ids: torch.Tensor) -> TextEncoding:
        mask = ids != 0
        mask[:, 0] = True
        x = self.embed(ids) + self.pos[: ids.shape[1]]
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=~mask)
        x = self.norm(x)
        return TextEncoding(x, mask, x[:, 0])
