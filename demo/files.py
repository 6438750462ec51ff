"""Files: Gradio's upload folder, the studio's output folder, and bounding what Gradio keeps.

Every file the studio writes or accepts lives in Gradio's upload folder (``upload_folder``):
outputs are written there so Gradio serves them as they are instead of copying them (Gradio
6.31 never deletes its copies of ``gr.Video`` / ``gr.DownloadButton`` outputs: they are missing
from ``Blocks.temp_file_sets``). ``Outputs`` is the studio's folder inside it (one sub-folder per
request, deleted by age and count); ``prune_files`` bounds everything Gradio keeps for the
Blocks, after every clip and every ``CACHE_PRUNE_EVERY_S`` (the janitor thread).
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from pathlib import Path

from . import limits as L
from .limits import LimitError

log = logging.getLogger("stunet.studio")


def upload_folder() -> Path:
    """Where Gradio keeps uploaded files (the only place a first-frame path may point to)."""
    from gradio.utils import get_upload_folder
    return Path(get_upload_folder()).resolve()


def uploaded_path(value, what: str) -> Path:
    """A FileData dict (the handler runs with ``preprocess=False``) -> its path, which must lie in Gradio's
    upload folder (an API caller could name any file)."""
    if not isinstance(value, dict) or not isinstance(value.get("path"), str) or not value["path"]:
        raise LimitError(f"The {what} must be a file uploaded to this app.")
    root = upload_folder()
    try:
        path = Path(value["path"]).resolve()
        inside = path.is_relative_to(root) and path != root and path.is_file()
    except (OSError, ValueError):
        inside = False
    if not inside:
        raise LimitError(f"The {what} must be a file uploaded to this app.")
    if path.stat().st_size > L.MAX_UPLOAD_BYTES:
        raise LimitError(f"The {what} is over the {L.MAX_UPLOAD_BYTES // 2**20} MB limit.")
    return path


def prune_files(blocks, max_bytes: int, max_files: int) -> int:
    """Delete the oldest files Gradio keeps for ``blocks`` (outputs, previews, uploads) beyond the caps.

    Gradio's own ``delete_cache`` only deletes by age, so a busy hour (or a stream of uploads)
    could fill the disk; this keeps at most ``max_bytes`` and ``max_files``, deleting the oldest
    down to 80 % of either cap. Files marked ``keep_in_cache`` (examples) are kept.
    """
    keep = set()
    for component in list(blocks.blocks.values()):
        keep.update(getattr(component, "keep_in_cache", ()))
    files, seen = [], set()
    for temp_set in list(blocks.temp_file_sets):
        for f in list(temp_set):
            if f in keep:
                continue
            try:
                st = os.lstat(f)
            except OSError:
                temp_set.discard(f)
                continue
            if f not in seen:
                seen.add(f)
                files.append((st.st_mtime, st.st_size, f))
    total, n = sum(x[1] for x in files), len(files)
    if total <= max_bytes and n <= max_files:
        return 0
    files.sort()
    removed = 0
    root = upload_folder()
    for _, size, f in files:
        if total <= 0.8 * max_bytes and n <= 0.8 * max_files:
            break
        if not Path(f).resolve().is_relative_to(root):      # only ever delete inside Gradio's folder
            continue
        try:
            os.remove(f)
        except FileNotFoundError:
            pass
        except OSError:
            continue
        for temp_set in list(blocks.temp_file_sets):
            temp_set.discard(f)
        parent = Path(f).resolve().parent
        if parent != root and parent.parent == root:        # Gradio's per-file hash folder
            try:
                parent.rmdir()
            except OSError:
                pass
        total, n, removed = total - size, n - 1, removed + 1
    log.info("pruned %d cached files (%d left, %.1f MB)", removed, n, total / 2**20)
    return removed


def _janitor(owner_ref, stop: threading.Event) -> None:
    """Every CACHE_PRUNE_EVERY_S: ``owner.prune_cache()``, until ``stop`` is set or the owner is gone."""
    while not stop.wait(L.CACHE_PRUNE_EVERY_S):
        owner = owner_ref()
        if owner is None:
            return
        try:
            owner.prune_cache()
        except Exception:  # pragma: no cover - housekeeping must never take the server down
            log.exception("pruning the file cache failed")
        del owner


class Outputs:
    """The studio's output folder inside Gradio's: a sub-folder per request, examples kept apart.

    Deleted at exit or when dropped; request folders older than OUTPUT_TTL_S, and the oldest
    beyond MAX_OUTPUT_DIRS, are deleted by ``cleanup`` (before every clip). ``attach`` bounds
    the files Gradio itself keeps for the Blocks (``prune_files``).
    """

    def __init__(self):
        root = upload_folder()
        root.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix="stunet-studio-", dir=root))
        weakref.finalize(self, shutil.rmtree, self.dir, ignore_errors=True)     # at exit, or when dropped
        self.example_dir = self.dir / "examples"
        self._blocks = None                                                     # weakref to the gr.Blocks
        self._janitor_stop = threading.Event()
        weakref.finalize(self, self._janitor_stop.set)

    def cleanup(self) -> None:
        """Delete request folders older than OUTPUT_TTL_S, and the oldest beyond MAX_OUTPUT_DIRS."""
        now = time.time()
        dirs = sorted((p for p in self.dir.iterdir() if p.is_dir() and p != self.example_dir),
                      key=lambda p: p.stat().st_mtime)
        for i, p in enumerate(dirs):
            if now - p.stat().st_mtime > L.OUTPUT_TTL_S or len(dirs) - i > L.MAX_OUTPUT_DIRS:
                shutil.rmtree(p, ignore_errors=True)

    def request_dir(self, example: bool = False) -> Path:
        """A new folder for one request's files (under ``examples/`` for a cached example)."""
        d = (self.example_dir if example else self.dir) / uuid.uuid4().hex[:12]
        d.mkdir(parents=True, exist_ok=True)
        return d

    def attach(self, blocks, janitor: bool = True) -> None:
        """Bound the files Gradio keeps for ``blocks``: after every clip and every CACHE_PRUNE_EVERY_S."""
        self._blocks = weakref.ref(blocks)
        if janitor:
            threading.Thread(target=_janitor, args=(weakref.ref(self), self._janitor_stop),
                             name="stunet-cache-janitor", daemon=True).start()

    def prune_cache(self) -> int:
        blocks = self._blocks() if self._blocks is not None else None
        if blocks is None:
            return 0
        return prune_files(blocks, L.CACHE_MAX_BYTES, L.CACHE_MAX_FILES)
