"""The checkpoints the studio offers: the full model and, where one is shipped, its distilled fast model; and
the styles (issue 33) that can be applied to them.

A choice is a checkpoint directory with its own sampling defaults (``sampling.json``: the fast
model's N DDIM steps, the full model's 25 DPM-Solver++ steps). The page is built from the
checkpoints' headers; the weights load in the background (``load``: one shared, thread-safe
``Pipeline`` per directory).

A style is a style directory (``stunet stylize``: ``config.json``, ``style.safetensors``, ``style.json``) in
the styles folder (``$STUNET_STYLES``, else ``assets/stunet-shapes-styles``), offered by its folder's name
(``available_styles``). ``Styles`` makes a model's styled pipeline (``stunet.style_weights.styled_pipeline``:
spatial weights interpolated, temporal ones kept) once per (model, style, strength) and keeps the last few.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from stunet.checkpoint import DEFAULT_MODEL, VOCAB_NAME, read_config, read_sampling
from stunet.defaults import SamplingDefaults

log = logging.getLogger("stunet.studio")

FULL, FAST, ONE_PASS = "full", "fast", "one-pass"
FAST_MODEL_ENV = "STUNET_FAST_MODEL"
DEFAULT_FAST_MODEL = DEFAULT_MODEL.parent / "stunet-shapes-fast"
ONE_PASS_MODEL_ENV = "STUNET_ONE_PASS_MODEL"
DEFAULT_ONE_PASS_MODEL = DEFAULT_MODEL.parent / "stunet-shapes-one-pass"
LABELS = {FULL: "Full", FAST: "Fast", ONE_PASS: "One-pass"}


@dataclass(frozen=True)
class ModelChoice:
    key: str                            # what the API takes: "full", "one-pass" or "fast"
    directory: Path | None              # None: a pipeline handed to the studio (tests, tools)
    defaults: SamplingDefaults

    @property
    def label(self) -> str:
        return f"{LABELS.get(self.key, self.key)} ({self.defaults.steps} steps)"


def fast_model_dir() -> Path:
    return Path(os.environ.get(FAST_MODEL_ENV, DEFAULT_FAST_MODEL))


def one_pass_model_dir() -> Path:
    """The guidance-distilled full model (``stunet.guidance_distill``): the full model's steps, one row each."""
    return Path(os.environ.get(ONE_PASS_MODEL_ENV, DEFAULT_ONE_PASS_MODEL))


def _compatible(full: Path, fast: Path) -> str | None:
    """Why the fast checkpoint cannot sit beside the full one in the same page, or None."""
    a, b = read_config(full), read_config(fast)
    if a.replace(guidance_embedding=False) != b.replace(guidance_embedding=False):
        return "its architecture differs from the full model's beyond the guidance embedding"
    if (full / VOCAB_NAME).read_text() != (fast / VOCAB_NAME).read_text():
        return "its vocabulary differs from the full model's"
    return None


def available(full_dir: Path, fast_dir: Path | None = None, default: str = FULL,
              one_pass_dir: Path | None = None) -> list[ModelChoice]:
    """The choices, the default first: the full model, and the one-pass and fast ones when their checkpoints
    are there and fit the same page (same architecture apart from the guidance input, same vocabulary).
    A ``default`` that is not offered falls back to the full model."""
    choices = [ModelChoice(FULL, Path(full_dir), read_sampling(full_dir))]
    extra = ((ONE_PASS, one_pass_model_dir() if one_pass_dir is None else Path(one_pass_dir)),
             (FAST, fast_model_dir() if fast_dir is None else Path(fast_dir)))
    for key, d in extra:
        if not (d / "config.json").is_file():
            continue
        try:
            why = _compatible(Path(full_dir), d)
            if why is None:
                choices.append(ModelChoice(key, d, read_sampling(d)))
            else:
                log.info("%s model at %s not offered: %s", key, d, why)
        except (OSError, ValueError) as e:
            log.warning("%s model at %s not offered: %s", key, d, e)
    choices.sort(key=lambda c: c.key != default)
    return choices


_PIPELINES: dict[Path, object] = {}
_LOCK = threading.Lock()


def load(directory: Path):
    """The process's one Pipeline for ``directory`` (loaded on first use, on ``stunet.device.resolve_device()``:
    ``$STUNET_DEVICE``, else CUDA where there is a GPU; ``$STUNET_PRECISION`` applies)."""
    from stunet.device import resolve_device
    from stunet.pipeline import Pipeline
    key = Path(directory).resolve()
    with _LOCK:
        if key not in _PIPELINES:
            t0 = time.perf_counter()
            pipe = Pipeline.from_pretrained(key, device=resolve_device())
            _PIPELINES[key] = pipe
            log.info("model %s loaded in %.1f s on %s (precision %s: %s)", key.name, time.perf_counter() - t0,
                     pipe.device, pipe.precision.name, pipe.precision.reason)
        return _PIPELINES[key]


# ----------------------------------------------------------------------------- the keyframe cascade (Compare tab)
CASCADE_MODEL_ENV = "STUNET_CASCADE_MODEL"
DEFAULT_CASCADE_MODEL = DEFAULT_MODEL.parent / "stunet-cascade"


def cascade_model_dir() -> Path:
    return Path(os.environ.get(CASCADE_MODEL_ENV, DEFAULT_CASCADE_MODEL))


def cascade_available(directory: Path | None = None) -> Path | None:
    """The keyframe cascade's checkpoint folder when one is there and this stunet can load it, else None
    (then the studio has no Compare tab)."""
    d = cascade_model_dir() if directory is None else Path(directory)
    if not (d / "config.json").is_file():
        return None
    import importlib.util
    if importlib.util.find_spec("stunet.cascade") is None:
        log.info("cascade at %s not offered: this stunet has no stunet.cascade", d)
        return None
    return d


def load_cascade(directory: Path):
    """The process's one cascade pipeline for ``directory`` (``stunet.cascade.load_pipeline``; loaded on first use)."""
    from stunet.device import resolve_device
    from stunet.shapes.compare import load_cascade as load
    key = ("cascade", Path(directory).resolve())
    with _LOCK:
        if key not in _PIPELINES:
            t0 = time.perf_counter()
            _PIPELINES[key] = load(key[1], device=resolve_device())
            log.info("cascade %s loaded in %.1f s", key[1].name, time.perf_counter() - t0)
        return _PIPELINES[key]


# ----------------------------------------------------------------------------- SSR (issue 34)
class Upscaler:
    """The SSR model (``stunet.ssr``) the Upscale choice uses, read on first use from ``directory`` (default
    ``$STUNET_SSR``, else ``assets/stunet-ssr``) and shared by all sessions. ``available`` is False where there is
    none, or where its config (read without the weights) is not for clips of ``base_size`` pixels: the choice is
    then off and says so."""

    def __init__(self, directory: Path | None = None, base_size: int | None = None):
        import json

        from stunet.ssr.checkpoint import CONFIG_NAME, default_ssr_dir, is_ssr
        from stunet.ssr.config import SSRConfig
        self.directory = Path(directory) if directory is not None else default_ssr_dir()
        self.available, self.size = False, None
        if is_ssr(self.directory):
            try:
                cfg = SSRConfig.from_dict(json.loads((self.directory / CONFIG_NAME).read_text()))
                self.available = base_size is None or cfg.base_size == base_size
                self.size = cfg.size
                if not self.available:
                    log.info("SSR model %s not offered: it upscales %d px clips, the model makes %d px",
                             self.directory, cfg.base_size, base_size)
            except (OSError, ValueError, TypeError) as e:
                log.warning("SSR model %s not offered: %s", self.directory, e)
        self._model = None
        self._lock = threading.Lock()

    @property
    def model(self):
        with self._lock:
            if self._model is None:
                from stunet.ssr.checkpoint import load_ssr
                t0 = time.perf_counter()
                self._model = load_ssr(self.directory)
                log.info("SSR model %s loaded in %.2f s", self.directory.name, time.perf_counter() - t0)
            return self._model

    def upscale(self, video, seed: int, precision):
        """A clip (t h w 3 uint8) at the SSR model's size, MultiDiffusion windows, seeded by the clip's seed."""
        from stunet.ssr.sampling import upscale_clip
        return upscale_clip(self.model, video, seed=seed, precision=precision)


# ----------------------------------------------------------------------------- styles (issue 33)
STYLES_ENV = "STUNET_STYLES"
DEFAULT_STYLES = DEFAULT_MODEL.parent / "stunet-shapes-styles"
NO_STYLE = "None"                      # the Style choice that keeps the model's own weights


def styles_dir() -> Path:
    return Path(os.environ.get(STYLES_ENV, DEFAULT_STYLES))


def available_styles(directory: Path | None = None) -> dict[str, Path]:
    """{name: style directory} of the styles folder (default ``styles_dir()``), by name: every sub-folder whose
    ``style.json`` reads as a stunet style. Nothing is loaded here (the weights are read when a style is first
    used, and checked against the model then); an unreadable folder is logged and left out, a missing styles
    folder gives {}."""
    from stunet.style_weights import StyleError, read_style_info
    root = styles_dir() if directory is None else Path(directory)
    if not root.is_dir():
        return {}
    out = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        if d.name == NO_STYLE or not d.name.isprintable() or len(d.name) > 60:
            log.info("style folder %s not offered: not a usable name", d)
            continue
        try:
            read_style_info(d)
        except (OSError, StyleError) as e:
            log.warning("style %s not offered: %s", d, e)
            continue
        out[d.name] = d
    return out


class Styles:
    """The styles offered (``names``) and a small cache of styled pipelines, shared by all sessions.

    ``pipeline(pipe, key, name, strength)`` is ``pipe`` itself for no style or strength 0 (the same object: the
    same clips bit for bit); else the pipeline whose spatial weights are ``(1 - strength) * pipe's + strength *
    the style's`` (``stunet.style_weights``), built once per (model key, style, strength) and kept among the last
    ``cache_size`` (each a copy of the model). A style that does not fit the model (another architecture, other
    base weights, a bad file) raises ``stunet.style_weights.StyleError``, saying which.
    """

    def __init__(self, styles: dict[str, Path] | None = None, cache_size: int = 3):
        self.paths = dict(styles or {})
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return list(self.paths)

    def pipeline(self, pipe, key: str, name: str | None, strength: float):
        if name is None or name == NO_STYLE or strength == 0:
            return pipe
        from stunet.style_weights import load_style, styled_pipeline
        cache_key = (key, id(pipe), name, float(strength))
        with self._lock:
            hit = self._cache.get(cache_key)
            if hit is not None:
                self._cache.move_to_end(cache_key)
                return hit
            t0 = time.perf_counter()
            styled = styled_pipeline(pipe, load_style(self.paths[name]), float(strength))
            log.info("style %s at %g on the %s model built in %.2f s", name, strength, key, time.perf_counter() - t0)
            self._cache[cache_key] = styled
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return styled

    def __len__(self) -> int:
        return len(self._cache)
