"""Shapes-world clips as the model's inputs: tensors, the tokenizer, training batches.

A world clip is uint8 ``t h w 3`` (``stunet.shapes.world``); the model takes float
``b 3 t h w`` in [-1, 1] (``stunet.video.from_uint8``) and word ids from a tokenizer over the
world's vocabulary. Training batches drop ``CAPTION_DROPOUT`` of the captions, so the model
also learns the empty prompt that classifier-free guidance needs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..config import STUNetConfig
from ..text import Tokenizer
from ..video import from_uint8
from . import world

CAPTION_DROPOUT = 0.1


def to_tensor(videos: np.ndarray) -> torch.Tensor:
    """uint8 b t h w 3 -> float b 3 t h w in [-1, 1] (``stunet.video.from_uint8`` on a batch)."""
    return from_uint8(videos)


def tokenizer_for(cfg: STUNetConfig) -> Tokenizer:
    """The tokenizer over the world's vocabulary, checked against the config's ``vocab_size``."""
    tok = Tokenizer(world.VOCABULARY, cfg.max_words)
    if len(tok) > cfg.vocab_size:
        raise ValueError(f"world vocabulary ({len(tok)}) exceeds config vocab_size ({cfg.vocab_size})")
    return tok


@dataclass
class Batch:
    x0: torch.Tensor        # b 3 t h w
    ids: torch.Tensor       # b l
    stride: torch.Tensor    # b
    captions: list[str]


def stride_probs(cfg: STUNetConfig) -> tuple[list[int], np.ndarray]:
    """The frame strides a video batch is drawn at and their probabilities (stride 1 four times as often)."""
    strides = [s for s in cfg.strides if cfg.frames // s >= cfg.temporal_factor
               and (cfg.frames // s) % cfg.temporal_factor == 0]
    p = np.array([4.0 if s == 1 else 1.0 for s in strides]); p /= p.sum()
    return strides, p


def video_batch(rng: np.random.Generator, tok: Tokenizer, cfg: STUNetConfig, batch: int,
                spec_p: np.ndarray | None = None, caption_dropout: float = CAPTION_DROPOUT,
                style: str = "flat") -> Batch:
    """``batch`` world clips; clip kinds uniform, or drawn with ``spec_p`` (``world.spec_probs``);
    ``caption_dropout`` of the captions are replaced by the empty prompt; drawn in ``style``
    (``world.STYLES``: the same clips as flat, another rendering)."""
    # One (frames, stride) per batch: the clip always spans cfg.frames base frames.
    strides, p = stride_probs(cfg)
    stride = int(rng.choice(strides, p=p))
    frames = cfg.frames // stride
    clips = [world.make_clip(world.random_spec(rng, p=spec_p), frames, cfg.height, stride,
                             int(rng.integers(2**62)), style=style)
             for _ in range(batch)]
    captions = [c.caption if rng.random() >= caption_dropout else "" for c in clips]
    ids, _ = tok.batch(captions)
    return Batch(to_tensor(np.stack([c.video for c in clips])), ids, torch.full((batch,), stride), captions)


def image_batch(rng: np.random.Generator, tok: Tokenizer, cfg: STUNetConfig, batch: int) -> Batch:
    """``batch`` single frames (b 3 1 h w), each from its own random world clip, for the image stage."""
    clips = [world.make_clip(world.random_spec(rng), cfg.frames, cfg.height, 1, int(rng.integers(2**62)))
             for _ in range(batch)]
    frames = np.stack([c.video[rng.integers(len(c.video))][None] for c in clips])   # b 1 h w 3
    captions = [c.caption if rng.random() >= CAPTION_DROPOUT else "" for c in clips]
    ids, _ = tok.batch(captions)
    return Batch(to_tensor(frames), ids, torch.ones(batch, dtype=torch.long), captions)
