"""The shipped keyframe cascade (assets/stunet-cascade) and its equal-budget STUNet: they load strictly,
their training budgets match as the experiment says, the comparison's outputs are consistent with
each other, and `stunet generate --model assets/stunet-cascade` takes the same flags as the STUNet.

The comparison itself (``stunet compare``, about half an hour) is not rerun here; its table,
plot and per-clip results ship in the folder and its model card says how they were made.
"""
import json

import numpy as np
import pytest

from stunet.cascade import CascadePipeline, load_pipeline
from stunet.checkpoint import DEFAULT_MODEL, load_pretrained
from stunet.pipeline import Pipeline
from stunet.shapes.compare import EQUAL_BUDGET_STUNET, equal_budget_stunet
from stunet.shapes.metrics import evaluate_clip

CASCADE = DEFAULT_MODEL.parent / "stunet-cascade"


def test_cascade_and_its_equal_budget_stunet_load_strictly():
    cascade = load_pipeline(CASCADE, precision="fp32")
    assert type(cascade) is CascadePipeline and cascade.keyframe_frames == (0, 4, 8, 12, 16, 20, 24, 28)
    assert equal_budget_stunet(CASCADE) == CASCADE / EQUAL_BUDGET_STUNET
    stunet = load_pipeline(CASCADE / EQUAL_BUDGET_STUNET, precision="fp32")
    assert type(stunet) is Pipeline
    model, _ = load_pretrained(CASCADE / EQUAL_BUDGET_STUNET)                    # strict
    assert model.config == load_pretrained(DEFAULT_MODEL)[0].config          # the shapes preset, as shipped
    n_stunet = sum(p.numel() for p in model.parameters())
    n_cascade = sum(p.numel() for p in load_pretrained(CASCADE / "net")[0].parameters())
    assert 0.9 <= n_cascade / n_stunet <= 1.1                                 # issue 18: within 10 %


def test_budgets_match_clip_for_clip_and_flop_for_flop():
    budget = json.loads((CASCADE / "budget.json").read_text())
    s, c = budget["arms"]["stunet"], budget["arms"]["cascade"]
    assert s["clips"] == c["clips"] == 72_000 and s["step"] == c["step"] == 9_000
    assert abs(budget["cascade_over_stunet_flops"] - 1) < 0.01
    assert 0.9 <= budget["cascade_over_stunet_parameters"] <= 1.1
    for arm in (s, c):                              # every step accounted for, wherever it ran
        assert sum(seg["steps"] for seg in arm["segments"]) == 9_000
        assert all(seg["precision"] == "bf16" for seg in arm["segments"])


def test_shipped_comparison_outputs_agree():
    result = json.loads((CASCADE / "results.json").read_text())
    table = (CASCADE / "table.md").read_text()
    assert (CASCADE / "rate_error.png").stat().st_size > 10_000
    assert {"stunet", "reference", "cascade", "oracle"} <= set(result["models"]) and len(result["settings"]["seeds"]) >= 3
    assert result["settings"]["oracle"] and result["settings"]["reference"]
    assert ("does not hold" in table) == (not result["sanity_bar"]["holds"])
    n = len(result["prompts"]) * len(result["settings"]["seeds"])
    assert sum(1 for r in result["rows"] if r["model"] == "cascade") == n


@pytest.mark.slow
def test_generate_cli_on_the_shipped_cascade_takes_the_stunets_flags(tmp_path):
    from stunet.cli import main
    out = tmp_path / "clip.npy"
    prompt = "a red circle moving left"
    assert main(["generate", prompt, "--model", str(CASCADE), "--out", str(out), "--seed", "0",
                 "--steps", "15", "--guidance", "3"]) == 0
    clip = np.load(out)
    assert clip.shape == (32, 32, 32, 3) and clip.dtype == np.uint8
    assert evaluate_clip(clip, prompt).color_ok
