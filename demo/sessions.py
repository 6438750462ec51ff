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

from stunet.inspection import Recording
from stunet.pipeline import Settings

from . import limits as L


@dataclass(kw_only=True)
class ClipRecord:
    """A session's last clip: what the Inspect tab shows.

    ``recording`` is what the Inspector saw while the clip was made. A generated clip is made
    without one (Generate records nothing) and recorded when a view first asks for it
    (``demo.studio.Studio.recording_of``): the same settings, seed and precision sampled again
    with the Inspector attached give the same clip, which is checked. ``rerun`` says that is
    possible (an edit's inputs are not kept, so an edit is recorded while it runs).
    """
    settings: Settings
    fps: int
    video: np.ndarray                   # t h w 3 uint8, the whole clip
    words: list[str]                    # known words, token positions 1..n
    unknown: list[str]
    truncated: list[str]
    mp4: str
    gif: str | None                     # None until asked for (``Studio.make_gif``)
    seconds: float
    recording: Recording | None = None  # None: not recorded (yet), or released to bound memory
    recorded_frames: int = 0            # frames the recording covers (the first window for long clips)
    rerun: bool = False                 # the recording can be made again from the settings (a generated clip)
    rerecorded_same: bool | None = None # the clip sampled again for the recording equalled this one (None: not re-run)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    edit: dict | None = None            # an edit's record (stunet.editing.Edit.record): mode, strength, PSNR, ...
    released: bool = False              # the recording was dropped to bound memory (see Records)
    first_frame: np.ndarray | None = field(default=None, repr=False)   # h w 3 uint8 when image-to-video
    precision: dict = field(default_factory=dict)    # {"precision": name, "precision_reason": why} it ran in
    model: str = "full"                 # the studio's model choice that made it ("full" / "fast")
    style: str | None = None            # the style its spatial weights were mixed with (None: the model's own)
    style_strength: float = 1.0         # ... at this strength (a re-run for Inspect uses the same weights)
    session: str | None = None          # the Gradio session that made it (released when that session ends)
    upscaled: np.ndarray | None = field(default=None, repr=False)   # T H W 3 uint8: the SSR stage's clip, shown

    @property
    def nbytes(self) -> int:
        return 0 if self.recording is None else self.recording.nbytes

    def release(self) -> None:
        """Drop the recording (memory); a generated clip is recorded again when a view asks for it."""
        self.recording = None
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
        if self.style is not None:
            d["style"], d["style_strength"] = self.style, self.style_strength
        if self.upscaled is not None:
            d["upscale"] = True
        return d


def return_freed_memory() -> None:
    """Hand the heap's free pages back to the OS (glibc ``malloc_trim``; elsewhere nothing), so the
    resident size falls when recordings are released, not only the Python objects."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def current_session() -> str | None:
    """The Gradio session of the event being handled (None outside one): whose tab's end releases a recording."""
    try:
        from gradio.context import LocalContext
        return getattr(LocalContext.request.get(None), "session_hash", None)
    except (ImportError, LookupError):
        return None


class Records:
    """Weak references to the sessions' recorded clips, oldest first, to bound their total memory.

    Gradio keeps a closed tab's state for an hour, so many short visits could pile up
    recordings: past RECORDS_MAX_BYTES the oldest recordings still alive are released, and
    ``release_session`` releases a session's at once when its tab closes (``demo.unload``).
    A released generated clip is recorded again if a view asks for it; a released edit asks
    for the edit to be run again.
    """

    def __init__(self, max_bytes: int | None = None):
        self._lock = threading.Lock()
        self._live: OrderedDict[str, weakref.ref] = OrderedDict()
        self.max_bytes = L.RECORDS_MAX_BYTES if max_bytes is None else max_bytes

    def _alive(self) -> list[ClipRecord]:
        out = []
        for k, ref in list(self._live.items()):
            r = ref()
            if r is None or r.recording is None:
                self._live.pop(k, None)
            else:
                out.append(r)
        return out

    def add(self, rec: ClipRecord) -> None:
        """``rec`` now holds a recording: count it, and release the oldest others past the bound."""
        with self._lock:
            self._live.pop(rec.id, None)
            self._live[rec.id] = weakref.ref(rec)
            alive = self._alive()
            total = sum(r.nbytes for r in alive)
            released = 0
            for r in alive:
                if total <= self.max_bytes:
                    break
                if r is rec:
                    continue
                total -= r.nbytes
                r.release()
                self._live.pop(r.id, None)
                released += 1
        if released:
            return_freed_memory()

    def release_session(self, session: str | None) -> int:
        """Release every recording made for ``session`` (its tab closed); returns how many."""
        if not session:
            return 0
        with self._lock:
            mine = [r for r in self._alive() if r.session == session]
            for r in mine:
                r.release()
                self._live.pop(r.id, None)
        if mine:
            return_freed_memory()
        return len(mine)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(r.nbytes for r in self._alive())

    def __len__(self) -> int:
        with self._lock:
            return len(self._alive())


class ExampleCache:
    """The examples' clips, made on their first run (not at start-up) and kept for the process."""

    def __init__(self, examples: list[list] | None = None, sampler: str = L.DEFAULT_SAMPLER, model: str = "full"):
        self.examples = examples or []           # [prompt, seed, steps, guidance, frames] rows, of the default model
        self.sampler, self.model = sampler, model
        self._clips: dict[tuple, ClipRecord] = {}
        self._lock = threading.Lock()

    def key(self, s: Settings, fps: int, model: str = "full", upscale: bool = False) -> tuple | None:
        """The cache key of a request that is one of the examples with default settings (upscaled or not), else
        None."""
        for p, seed, steps, guidance, frames in self.examples:
            if (s.prompt, s.seed, s.steps, s.guidance, s.frames, s.sampler, s.stride, fps, model) == \
                    (p, seed, steps, float(guidance), frames, self.sampler, L.DEFAULT_STRIDE, L.DEFAULT_FPS,
                     self.model):
                return (s, fps, model, bool(upscale))
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
