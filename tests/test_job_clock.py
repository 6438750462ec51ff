"""The job deadline (demo.job_clock.JobClock) on a scripted time source: no sleeping, no wall-clock asserts.

The clock reads its time source once when made and once per step, so a list of times scripts a whole run.
"""
from __future__ import annotations

import pytest

from demo import limits as L
from demo.job_clock import JobClock
from demo.limits import LimitError

PROMPT = "a blue square quickly spinning"


def scripted(*times: float):
    """A time source returning ``times`` in turn (then the last one again)."""
    it = iter(times)
    last = [times[0]]

    def now() -> float:
        last[0] = next(it, last[0])
        return last[0]
    return now


def message(projected: float, deadline: float) -> str:
    return f"over the limit: {projected:.0f} s projected, {deadline:.0f} s allowed"


def test_the_first_step_sets_the_deadline_from_its_pace():
    clock = JobClock(message, now=scripted(100.0, 102.0))
    assert clock.deadline_s is None
    assert clock.step(1, 50) == 2.0
    assert clock.deadline_s == L.job_deadline_s(2.0, 50) == L.JOB_DEADLINE_MARGIN * 50 * 2.0


def test_steps_at_the_first_steps_pace_run_to_the_end():
    n = 40
    clock = JobClock(message, now=scripted(*[float(i) for i in range(n + 2)]))
    for k in range(1, n + 1):
        assert clock.step(k, n) == float(k)
    assert clock.elapsed_s() == n + 1.0


def test_a_run_projected_past_the_deadline_stops_between_steps(monkeypatch):
    """As test_studio's Generate deadline test, without sleeping: first step 1 s, then 2 s each; the deadline is
    0.5 x 4 steps x 1 s = 2 s, and after step 2 the projection is 1 + 2 + 2 x 2 = 7 s."""
    monkeypatch.setattr(L, "JOB_DEADLINE_FLOOR_S", 0)
    monkeypatch.setattr(L, "JOB_DEADLINE_MARGIN", 0.5)
    clock = JobClock(message, now=scripted(0.0, 1.0, 3.0))
    clock.step(1, 4)
    with pytest.raises(LimitError, match="over the limit: 7 s projected, 2 s allowed"):
        clock.step(2, 4)


def test_the_last_step_is_never_stopped(monkeypatch):
    monkeypatch.setattr(L, "JOB_DEADLINE_FLOOR_S", 0)
    clock = JobClock(message, now=scripted(0.0, 1.0, 1000.0))
    clock.step(1, 2)
    assert clock.step(2, 2) == 1000.0          # done: nothing left to save by stopping


def test_the_floor_gives_a_fast_first_step_a_minute():
    """A first step of 10 ms, then 5 s a step: 3 x 10 steps x 10 ms would stop it, the floor (60 s) does not."""
    n = 10
    clock = JobClock(message, now=scripted(0.0, *[0.01 + 5.0 * (k - 1) for k in range(1, n + 1)]))
    for k in range(1, n + 1):
        clock.step(k, n)                        # projected 45 s at every step
    assert clock.deadline_s == L.JOB_DEADLINE_FLOOR_S == 60


def test_a_one_step_run_has_nothing_to_check():
    clock = JobClock(message, now=scripted(0.0, 5000.0))
    assert clock.step(1, 1) == 5000.0


# ---------------------------------------------------------------------------- the tabs take their time from it
@pytest.fixture(scope="module")
def studio(tiny_model, tiny_tokenizer):
    from demo.studio import Studio
    from stunet.defaults import SamplingDefaults
    from stunet.pipeline import Pipeline
    return Studio(Pipeline(tiny_model, tiny_tokenizer, "fp32", SamplingDefaults(steps=4, sampler="ddim")))


def test_an_edit_is_stopped_past_its_deadline_without_waiting(studio):
    """Step 1 in 1 s, then 100 s a step: the default deadline (a minute at least) is passed after step 2."""
    import numpy as np

    from demo.editing import EditTab
    from stunet.video import write_video
    from demo.files import upload_folder
    tab = EditTab(studio)
    tab.now = scripted(0.0, 1.0, 101.0, 201.0, 301.0)
    d = upload_folder() / "test-job-clock"
    d.mkdir(parents=True, exist_ok=True)
    clip = np.zeros((8, 16, 16, 3), np.uint8)
    for i in range(8):                          # a moving square (a GIF of identical frames is one image)
        clip[i, 4:10, i:i + 6] = 200
    gif = {"path": str(write_video(d / "in.gif", clip, scale=2))}
    updates = []
    with pytest.raises(LimitError, match="This edit would take about"):
        for out in tab.video_to_video(None, "upload", gif, "a red circle moving right", 1, 4, 3.0, 1.0, 8):
            updates.append(out[3])
    assert len(updates) == 1 and "denoising step 1/" in updates[0]       # stopped after its second step


def test_a_comparison_is_stopped_past_its_deadline_without_waiting(studio, tmp_path):
    from demo.compare import CompareTab
    from stunet.cascade import load_pipeline
    from stunet.cascade.testing import save_tiny_cascade
    cascade = load_pipeline(save_tiny_cascade(tmp_path / "cascade", seed=0, steps=2), precision="fp32")
    tab = CompareTab(studio, lambda: cascade)
    tab.now = scripted(0.0, 1.0, 101.0, 201.0)
    with pytest.raises(LimitError, match="This comparison would take about"):
        tab.compare(PROMPT, 1)
