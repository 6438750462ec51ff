"""How the studio refuses a request: the input checks and the job limit (demo.limits), and the errors a
visitor sees (demo.errors.guarded: escaped, internals hidden). The job clock itself: tests/test_job_clock.py."""
from __future__ import annotations

import html

import pytest


def test_limits_checks():
    from demo import limits as L
    assert L.check_int("Steps", 20.0, 1, 50) == 20
    for bad in (0, 51, 2.5, "20", None, True, float("nan"), float("inf"), [3]):
        with pytest.raises(L.LimitError, match="Steps must be a whole number from 1 to 50"):
            L.check_int("Steps", bad, 1, 50)
    assert L.check_float("Guidance", 3, 1, 10) == 3.0
    for bad in (0.5, 10.5, "3", None, float("nan")):
        with pytest.raises(L.LimitError, match="from 1 to 10"):
            L.check_float("Guidance", bad, 1, 10)
    assert L.check_frames(32, 4, 32) == 32 and L.check_frames(128, 4, 32) == 128
    for bad in (0, 2, 30, 132, 256, "32"):
        with pytest.raises(L.LimitError, match="multiple of 4 from 4 to 128"):
            L.check_frames(bad, 4, 32)
    assert L.check_prompt("  a red   circle ") == "a red circle"
    for bad, msg in (("", "empty"), ("   ", "empty"), (None, "text"), ("x" * 201, "200 characters"),
                     ("a\x00b", "control"), ("a\u202eb", "control"), (12, "text")):
        with pytest.raises(L.LimitError, match=msg):
            L.check_prompt(bad)
    with pytest.raises(L.LimitError):
        L.check_choice("Sampler", "euler", ["dpm++", "ddim"])
    with pytest.raises(L.LimitError):
        L.check_bool("Flag", "yes")
    assert L.MAX_SEED == 2**31 - 1 and L.MAX_STEPS == 50
    assert ("steps", "1 to 50") in L.limits_table()


def test_deadline_scales_with_the_first_step():
    """The job limit is counted in steps at the pace of the first one: a 3x slower machine gets 3x the time."""
    from demo import limits as L
    fast, slow = L.job_deadline_s(2.0, 50), L.job_deadline_s(6.0, 50)
    assert slow == 3 * fast == 3 * L.JOB_DEADLINE_MARGIN * 50 * 2.0
    assert L.job_deadline_s(0.001, 1) == L.JOB_DEADLINE_FLOOR_S


def test_guarded_escapes_and_hides_internals():
    import gradio as gr
    from demo.errors import guarded
    from demo.limits import LimitError

    @guarded
    def bad_input():
        raise LimitError("<script>alert(1)</script> is too long")

    @guarded
    def broken():
        raise RuntimeError("secret /home/user/model.safetensors")

    @guarded
    def gen():
        yield 1
        raise KeyError("/etc/passwd")

    with pytest.raises(gr.Error) as e:
        bad_input()
    assert "<script>" not in e.value.message and html.escape("<script>") in e.value.message
    with pytest.raises(gr.Error) as e:
        broken()
    assert "secret" not in e.value.message and "/home" not in e.value.message and "ref" in e.value.message
    it = gen()
    assert next(it) == 1
    with pytest.raises(gr.Error) as e:
        next(it)
    assert "passwd" not in e.value.message
