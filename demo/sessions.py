"""Session records: a session's last clip (``ClipRecord``), the registry that bounds their memory,
the lazily filled example cache, and the small cache of rendered feature views.

A ``ClipRecord`` lives in the session's ``gr.State`` (Gradio drops it STATE_TTL_S after the
tab closes); ``Records`` only holds weak references, to release the oldest recordings when
all sessions' together pass RECORDS_MAX_BYTES.
"""
from __future__ import annotations

import threading
import uuid
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from stunet.inspect import Recording
from stunet.pipeline import Settings

from . import limits as L


@dataclass
class ClipRecord:
    """A session's last clip: what the Inspect tab shows (no second sampling run)."""
    settings: Settings
    fps: int
    video: np.ndarray                   # t h w 3 uint8, the whole clip
    words: list[str]                    # known words, token positions 1..n
    unknown: list[str]
    truncated: list[str]
    recording: Recording
    recorded_frames: int                # frames the recording covers (the first window for long clips)
    mp4: str
    gif: str
    seconds: float
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    edit: dict | None = None            # an edit's record (stunet.editing.Edit.record): mode, strength, PSNR, ...
    released: bool = False              # the recording was dropped to bound memory (see Records)
    first_frame: np.ndarray | None = field(default=None, repr=False)   # h w 3 uint8 when image-to-video
    precision: dict = field(default_factory=dict)    # {"precision": name, "precision_reason": why} it ran in
    model: str = "full"                 # the studio's model choice that made it ("full" / "fast")

    def release(self) -> None:
        self.recording = Recording(level_names=list(self.recording.level_names))
        self.released = True

    def settings_dict(self) -> dict:
        """The settings used, as shown, returned by /generate and written into the .npz."""
        d = self.settings.to_dict()
        d.pop("overlap", None)
        d["fps"] = self.fps
        if self.edit:                   # an edit: its mode, strength, PSNR; the steps asked for (steps_run: done)
            d.update({k: v for k, v in self.edit.items() if k not in d or k == "steps"})
        if self.first_frame is not None:
            d["first_frame"] = "uploaded image"
        d.update(self.precision)
        d["model"] = self.model
        return d


class Records:
    """Weak references to the sessions' records, oldest first, to bound their total memory.

    Gradio keeps a closed tab's state for an hour, so many short visits could pile up
    recordings: past RECORDS_MAX_BYTES the oldest records still alive are released (their
    Inspect tab then asks to generate again; the same seed gives the same clip).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._live: OrderedDict[str, weakref.ref] = OrderedDict()

    def add(self, rec: ClipRecord) -> None:
        with self._lock:
            self._live[rec.id] = weakref.ref(rec)
            alive = [(k, r()) for k, r in self._live.items()]
            self._live = OrderedDict((k, self._live[k]) for k, r in alive if r is not None and not r.released)
            total = sum(r.recording.nbytes for _, r in alive if r is not None and not r.released)
            for k, r in alive:
                if total <= L.RECORDS_MAX_BYTES or r is None or r is rec:
                    continue
                total -= r.recording.nbytes
                r.release()
                self._live.pop(k, None)


class ExampleCache:
    """The examples' clips, made on their first run (not at start-up) and kept for the process."""

    def __init__(self, examples: list[list] | None = None, sampler: str = L.DEFAULT_SAMPLER, model: str = "full"):
        self.examples = examples or []           # [prompt, seed, steps, guidance, frames] rows, of the default model
        self.sampler, self.model = sampler, model
        self._clips: dict[tuple, ClipRecord] = {}
        self._lock = threading.Lock()

    def key(self, s: Settings, fps: int, model: str = "full") -> tuple | None:
        """The cache key of a request that is one of the examples with default settings, else None."""
        for p, seed, steps, guidance, frames in self.examples:
            if (s.prompt, s.seed, s.steps, s.guidance, s.frames, s.sampler, s.stride, fps, model) == \
                    (p, seed, steps, float(guidance), frames, self.sampler, L.DEFAULT_STRIDE, L.DEFAULT_FPS,
                     self.model):
                return (s, fps, model)
        return None

    def get(self, key: tuple | None) -> ClipRecord | None:
        return None if key is None else self._clips.get(key)

    def put(self, key: tuple, rec: ClipRecord) -> None:
        with self._lock:
            self._clips.setdefault(key, rec)

    def __contains__(self, key) -> bool:
        return key in self._clips


class LRU:
    """A small thread-safe least-recently-used cache (rendered feature views, all sessions together)."""

    def __init__(self, size: int):
        self.size = size
        self._d: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            hit = self._d.get(key)
            if hit is not None:
                self._d.move_to_end(key)
            return hit

    def put(self, key, value) -> None:
        with self._lock:
            self._d[key] = value
            while len(self._d) > self.size:
                self._d.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()

    def __len__(self) -> int:
        return len(self._d)
