"""The prompt sets and seeds of ``stunet eval`` and ``stunet compare``, in one place.

Two runs pair clip by clip (``stunet eval --against``) only when they draw the same clip for the same
(prompt, seed): the same initial noise for the model and the same world clip for the ceiling. The seed
arithmetic below is the one both commands use, so it cannot drift between them:

* the world clip of (prompt ``i``, seed ``s``) is drawn with seed ``WORLD_SEED * s + i``;
* a sampling batch's generator is seeded ``SEED_BASE * s + start`` from its first clip's seed ``s``
  and its position ``start`` in the job list (+ ``ORACLE_OFFSET`` for the cascade's oracle control),
  so a clip depends on the prompt set, the seeds and the batch size, not on what else runs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import periodic, world

WORLD_SEED = 10_007           # the world clip of (prompt i, seed s) is drawn with seed WORLD_SEED * s + i
SEED_BASE = 1_000_003         # batch generator seed = SEED_BASE * seed + batch start (+ ORACLE_OFFSET)
ORACLE_OFFSET = 500_000


def default_prompts() -> list[str]:
    """``stunet eval``'s fixed prompt set: every motion at every speed (3 prompts per motion, 30 in all).

    Colours and shapes cycle so that each colour appears 3-4 times and each shape 10 times;
    spinning uses squares and triangles only (the world never draws a spinning circle).
    """
    colors = list(world.COLORS)
    out = []
    for i, motion in enumerate(world.MOTIONS):
        speeds = (None, None, None) if motion == "standing still" else (None, "slowly", "quickly")
        for j, speed in enumerate(speeds):
            color = colors[(3 * i + j) % len(colors)]
            shapes = ("square", "triangle") if motion == "spinning" else world.SHAPES
            shape = shapes[(i + j) % len(shapes)]
            out.append(world.ClipSpec(color, shape, motion, speed).caption)
    return out


def compare_prompts(quick: bool = False) -> list[str]:
    """``stunet compare``'s fixed prompt set.

    Full: spinning (square, triangle), orbiting and bouncing (circle, square, triangle), each slowly,
    at normal speed and quickly (24 periodic prompts), then moving left / right / up / down (4). Colours
    cycle through the palette. ``quick``: one shape per periodic motion (square spin, triangle spin at
    the quick speed only, where its period sits on the keyframes' Nyquist limit; circle orbit and bounce)
    and the four linear motions (14 prompts).
    """
    colors = list(world.COLORS)
    out: list[world.ClipSpec] = []
    for motion in periodic.PERIODIC_MOTIONS:
        for shape in world.SHAPES:
            if motion == "spinning" and shape == "circle":
                continue
            if quick and shape != ("square" if motion == "spinning" else "circle") and \
                    not (motion == "spinning" and shape == "triangle"):
                continue
            for speed in ("slowly", None, "quickly"):
                if quick and motion == "spinning" and shape == "triangle" and speed != "quickly":
                    continue
                out.append(world.ClipSpec(colors[len(out) % len(colors)], shape, motion, speed))
    for i, motion in enumerate(world.LINEAR):
        out.append(world.ClipSpec(colors[(len(out) + i) % len(colors)], world.SHAPES[i % 3], motion, None))
    return [s.caption for s in out]


def load_prompts(path: str | Path) -> list[str]:
    """One caption per line (blank lines and '#' comments skipped); each must parse."""
    prompts = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            world.parse_caption(line)
        except ValueError as e:
            raise ValueError(f"{path}:{n}: {e}") from None
        prompts.append(line)
    if not prompts:
        raise ValueError(f"no prompts in {path}")
    return prompts


def select_prompts(path: str | Path | None = None, limit: int | None = None) -> list[str]:
    """The command lines' ``--prompts FILE --limit N``: the file's captions (default: ``default_prompts``),
    the first ``limit`` of them when given."""
    prompts = load_prompts(path) if path else default_prompts()
    if limit is not None:
        if limit < 1:
            raise ValueError("--limit must be >= 1")
        prompts = prompts[:limit]
    return prompts


def seed_list(seeds) -> list[int]:
    """``seeds``: a count N (seeds 0..N-1) or the seeds themselves."""
    if isinstance(seeds, (int, np.integer)):
        if seeds < 1:
            raise ValueError("seeds must be >= 1")
        return list(range(int(seeds)))
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("no seeds")
    return seeds


def seed_range(first: int, count: int) -> list[int]:
    """Seeds ``first`` .. ``first + count - 1`` (the command lines' ``--first-seed`` and ``--seeds``)."""
    if count < 1 or first < 0:
        raise ValueError("--seeds must be >= 1 and --first-seed >= 0")
    return list(range(first, first + count))


def world_seed(prompt_index: int, seed: int) -> int:
    """The world seed of the clip (prompt ``prompt_index``, ``seed``)."""
    return WORLD_SEED * int(seed) + int(prompt_index)


def batch_generator(seed: int, start: int, offset: int = 0):
    """The ``torch.Generator`` of the sampling batch starting at job ``start`` whose first clip has ``seed``."""
    import torch        # lazy: prompts and world seeds are read without torch (the ceiling needs none)
    return torch.Generator().manual_seed(SEED_BASE * int(seed) + int(start) + offset)
