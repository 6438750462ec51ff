"""Guidance distillation (Meng et al. 2023, stage one) on the tiny config: the student starts as the teacher's
conditional branch, learns the guided target, and samples with one row per step."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from stunet import guidance_distill as gd
from stunet.conditioning import Conditioning
from stunet.denoiser import Denoiser
from stunet.distill import student_from_teacher
from stunet.precision import Precision

FP32 = Precision("fp32", "test")


def _rows(teacher, tok, seed=0, batch=2):
    rc = gd.GuidanceDistillConfig(batch=batch)
    visited = gd.solver_timesteps(teacher.config, steps=range(3, 6))
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    return gd.make_rows(teacher, tok, rc, rng, gen, visited, FP32)


def test_student_at_init_is_the_teachers_conditional_branch_exactly(tiny_tokenizer):
    from conftest import make_tiny
    tiny_model = make_tiny()                 # its own copy: other tests move the shared one to channels-last
    student = student_from_teacher(tiny_model)
    rows = _rows(tiny_model, tiny_tokenizer)
    with torch.no_grad():
        text = tiny_model.encode_text(rows["ids"])
        cond = tiny_model(rows["x_t"], rows["t"], text, rows["stride"], rows["cond"], rows["mask"])
        for w in (1.0, 3.0, 5.5):
            out = student(rows["x_t"], rows["t"], student.encode_text(rows["ids"]), rows["stride"], rows["cond"],
                          rows["mask"], guidance=w)
            assert torch.equal(out, cond)


def test_target_is_classifier_free_guidance_of_the_teacher(tiny_model, tiny_tokenizer):
    rows = _rows(tiny_model, tiny_tokenizer, seed=3)
    with torch.no_grad():
        text = tiny_model.encode_text(rows["ids"])
        uncond = tiny_model.encode_text(tiny_tokenizer.batch([""])[0].expand(len(rows["t"]), -1))
        c = tiny_model(rows["x_t"], rows["t"], text, rows["stride"], rows["cond"], rows["mask"])
        u = tiny_model(rows["x_t"], rows["t"], uncond, rows["stride"], rows["cond"], rows["mask"])
    w = rows["w"].view(-1, 1, 1, 1, 1)
    torch.testing.assert_close(rows["target"], u + w * (c - u), rtol=1e-5, atol=1e-5)
    assert ((rows["w"] >= 1.0) & (rows["w"] <= 6.0)).all()


def test_a_short_run_lowers_the_distillation_loss(tiny_model, tiny_tokenizer):
    torch.manual_seed(0)
    student = student_from_teacher(tiny_model).train()
    rows = _rows(tiny_model, tiny_tokenizer, seed=1, batch=4)
    autocast = FP32.autocast("cpu")
    with torch.no_grad():
        before = gd.student_loss(student, rows, autocast).item()
    opt = torch.optim.Adam(student.parameters(), lr=1e-3)
    for _ in range(20):
        loss = gd.student_loss(student, rows, autocast)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = gd.student_loss(student, rows, autocast).item()
    assert before > 0 and after < 0.7 * before, (before, after)


def test_one_guided_step_of_the_student_is_one_forward_of_one_row(tiny_model, tiny_tokenizer):
    calls = []
    for model, rows_per_step in ((tiny_model, 2), (student_from_teacher(tiny_model), 1)):
        calls.clear()
        handle = model.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
        try:
            ids, _ = tiny_tokenizer.batch(["a red circle moving right"])
            text = model.encode_text(ids)
            uncond = model.encode_text(tiny_tokenizer.batch([""])[0])
            den = Denoiser(model, Conditioning(text, uncond), frames=8, guidance=3.0, precision="fp32")
            x = torch.randn(den.shape, generator=torch.Generator().manual_seed(0))
            den(x, 500, 0)
        finally:
            handle.remove()
        assert calls == [rows_per_step]


def test_config_refuses_bad_values():
    with pytest.raises(ValueError, match="guidance_range"):
        gd.GuidanceDistillConfig(guidance_range=(0.5, 3.0))
    with pytest.raises(ValueError, match="batch"):
        gd.GuidanceDistillConfig(batch=0)
    with pytest.raises(ValueError, match="default_share"):
        gd.GuidanceDistillConfig(default_share=1.5)
