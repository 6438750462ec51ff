"""Load, queue and growth: a full queue answers "busy" and recovers; the serving limits fit two cores;
(slow) a burst of clients, 100 requests without growth, the largest request's memory.

    python -m pytest tests/test_reliability_load.py                  # unit: serving configuration
    python -m pytest -m integration tests/test_reliability_load.py   # + queue full (a launched app)
    python -m pytest -m slow tests/test_reliability_load.py          # load run, plateau, memory (figures printed, -s)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import launched_app, load_script, slow_model

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "a red circle moving right"
pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]


load_test = load_script("load_test")


@pytest.fixture(scope="module")
def small_queue_app(tiny_checkpoint):
    with launched_app(tiny_checkpoint, queue_max_size=2) as app:
        yield app


# ============================================================================ 4. load
@pytest.mark.integration
def test_a_full_queue_answers_busy_and_recovers(small_queue_app):
    from gradio_client import Client
    d, url = small_queue_app
    clients = [Client(url, verbose=False, download_files=False) for _ in range(8)]
    outcomes = []
    with slow_model(d.studio.pipe.model, 0.15):
        jobs = [c.submit(PROMPT, i, 4, 3.0, 8, api_name="/generate") for i, c in enumerate(clients)]
        for job in jobs:
            try:
                outcomes.append(("ok", job.result(timeout=60)[3]["seed"]))
            except Exception as e:   # noqa: BLE001
                outcomes.append((type(e).__name__, str(e)))
    busy = [o for o in outcomes if o[0] == "QueueError"]
    ok = [o for o in outcomes if o[0] == "ok"]
    assert busy and all("Queue is full" in m for _, m in busy), outcomes
    assert ok and len(ok) + len(busy) == len(outcomes), outcomes     # nothing but done or "busy"
    assert len(d._queue) == 0                                         # every job answered: nothing left waiting
    with slow_model(d.studio.pipe.model, 0) as calls:
        assert clients[0].predict(PROMPT, 42, 1, 3.0, 8, api_name="/generate")[3]["seed"] == 42
    assert len(calls) == 1 and len(d._queue) == 0                     # recovered: served, one step, one call


def test_serving_configuration_fits_two_cores(tiny_checkpoint):
    """Production build: a bounded queue, one sampling run at a time, bounded inspect views, and
    only cheap handlers outside the queue."""
    from demo import limits as L
    from demo.app import build_demo
    from stunet.pipeline import Pipeline
    d = build_demo(Pipeline.from_pretrained(tiny_checkpoint), warm=False, janitor=False)
    assert d._queue.max_size == L.QUEUE_MAX_SIZE and L.QUEUE_MAX_SIZE <= 16
    limits = {}
    for fn in d.fns.values():
        if fn.fn is None:                      # front-end only (no Python runs)
            continue
        name = getattr(fn.fn, "__name__", repr(fn.fn))
        if name == "release_session":          # demo.unload takes no options; it only drops a session's records
            continue
        if fn.queue is False:
            assert name in {"prompt_html", "random_seed", "replay", "client_snippet", "pick", "<lambda>",
                            "load_example", "model_defaults", "picker"}, name
            continue
        assert fn.concurrency_limit is not None and fn.concurrency_limit != "default", fn.api_name
        limits[fn.concurrency_id] = fn.concurrency_limit
    gen = next(f for f in d.fns.values() if f.api_name == "generate")
    assert gen.concurrency_limit == L.GENERATE_CONCURRENCY == 1
    assert limits[gen.concurrency_id] == 1
    assert all(v <= 2 for v in limits.values()), limits
    from demo.app import launch_options
    opts = launch_options()
    assert opts["max_file_size"] == L.MAX_UPLOAD_BYTES and opts["show_error"] is False
    d.close()


# ============================================================================ slow: burst, plateau, memory
@pytest.mark.slow
@pytest.mark.integration
def test_load_burst_with_production_limits(tiny_checkpoint):
    with launched_app(tiny_checkpoint) as (d, url):
        r = load_test.run_load(url, clients=16, requests=3, steps=4, frames=8)
    print("\nload:", json.dumps(r))
    assert not r["errors"], r["errors"]
    assert r["ok"] >= 8 and r["ok"] + r["busy"] == r["calls"]
    assert r["normal_call_after_s"] < 10


@pytest.mark.slow
@pytest.mark.integration
def test_100_requests_memory_and_files_plateau(tiny_checkpoint, monkeypatch):
    from gradio_client import Client
    from demo import limits as L
    monkeypatch.setattr(L, "MAX_OUTPUT_DIRS", 16)
    monkeypatch.setattr(L, "CACHE_MAX_FILES", 64)
    with launched_app(tiny_checkpoint) as (d, url):
        clients = [Client(url, verbose=False, download_files=False) for _ in range(4)]
        marks = {}
        t0 = time.monotonic()
        for i in range(100):
            c = clients[i % 4]
            c.predict(load_test.PROMPTS[i % 4], i, 2, 3.0, 8, api_name="/generate")
            if i % 10 == 9:
                c.predict(1, api_name="/features")
                c.predict(api_name="/export_npz")
            if (i + 1) % 25 == 0:
                marks[i + 1] = (load_test.rss_mb(), load_test.files_in_cache(),
                                sum(1 for p in d.studio.out_dir.iterdir() if p.is_dir()),
                                len({f for s in list(d.temp_file_sets) for f in list(s) if os.path.exists(f)}))
        print(f"\nplateau ({time.monotonic() - t0:.0f} s): " + ", ".join(
            f"after {n}: {rss:.0f} MB RSS, {f} files ({own} the app's), {o} output folders"
            for n, (rss, f, o, own) in marks.items()))
    assert marks[100][0] - marks[50][0] < 40, marks            # MB
    # the app's own files are pruned after every clip to 80 % of the cap once over it (demo.files.prune_files), so
    # they saw-tooth between 0.8 and 1.0 of the cap, plus the files of the /features and /export_npz calls made
    # after the last clip's prune (seen: 42, 56, 54, 69); the folder, shared with whatever else ran on the
    # machine, may grow by no more than that saw-tooth
    assert all(own <= 64 + 16 for *_, own in marks.values()), marks
    assert marks[100][1] <= marks[50][1] + 0.2 * 64 + 16, marks
    assert marks[100][2] <= 16 + 2


@pytest.mark.slow
@pytest.mark.integration
def test_largest_request_memory_fits_a_16_gb_space():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "measure_memory.py"), "--threads", "2"],
                       capture_output=True, text=True, timeout=1500, cwd=ROOT,
                       env=dict(os.environ, OMP_NUM_THREADS="2"))
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads(r.stdout.strip().splitlines()[-1])
    print("\nlargest request:", json.dumps(m))
    assert m["peak_rss_mb"] < 4096            # a quarter of a 16 GB CPU Space
