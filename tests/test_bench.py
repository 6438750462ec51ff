"""Smoke tests of ``stunet bench`` on the tiny preset at tiny sizes (no timing assertions)."""
from __future__ import annotations

import re

import pytest

from stunet import bench


def _tiny_options(**kw) -> bench.Options:
    base = dict(preset="tiny", baseline="twin", frames=(8, 16), unet3d_frames=(8,), unet3d_layouts=("matched",),
                warmup=0, repeats=1, mem_steps=1, threads=1, inspect_steps=1, inspect_rounds=1, matmul_size=64,
                matmul_repeats=1, isolate=False, overrides=dict(height=16, width=16))
    base.update(kw)
    return bench.Options(**base)


@pytest.fixture(scope="module")
def tiny_results():
    return bench.run_benchmark(_tiny_options(), command="pytest", quiet=True)


def _rows(md: str, heading: str) -> tuple[list[str], list[list[str]]]:
    """Header and body rows of the first table after ``heading``."""
    section = md.split(heading, 1)[1]
    lines = [l for l in section.splitlines() if l.startswith("|")]
    table = []
    for l in lines:
        if table and not l.startswith("|"):
            break
        table.append([c.strip() for c in l.strip("|").split("|")])
    # stop at the first table's end: a header repeats '---' only once
    first_end = next((i for i, r in enumerate(table[2:], 2) if all(set(c) <= {"-"} for c in r)), None)
    table = table[:first_end - 1] if first_end else table
    return table[0], table[2:]


def _number(cell: str) -> float:
    m = re.search(r"[-+]?\d+(\.\d+)?", cell.replace(",", ""))
    assert m, f"no number in {cell!r}"
    return float(m.group())


def test_cells_are_measured(tiny_results):
    r = tiny_results
    a, b = r.names
    assert (a, b) == ("tiny", "tiny-vdm")
    for model in (a, b):
        for t in (8, 16):
            c = r.cells[(model, t)]
            assert "error" not in c, c.get("error")
            assert all(x > 0 for x in c["times"]) and c["flops"] > 0 and c["params"] > 0
            assert c["peak_bytes"] >= 0 and c["tensor_peak_bytes"] > 0
    # the twin has temporal attention at every level; its attention FLOPs are counted
    assert any("attention" in k for k in r.cells[(b, 8)]["flops_by_op"])
    assert r.cells[(b, 16)]["flops"] > r.cells[(a, 16)]["flops"]
    u = r.cells[("unet3d-matched", 8)]
    assert "error" not in u, u.get("error")
    assert u["params"] == r.params["unet3d-matched"] > 0
    assert bench.matmul_gflops(r, "bf16") > 0 and bench.matmul_gflops(r, "fp32") > 0
    assert min(r.inspect["plain"]) > 0 and min(r.inspect["inspected"]) > 0 and r.inspect["recorded_bytes"] > 0


def test_markdown_table(tiny_results):
    md = bench.render(tiny_results)
    for heading in ("## Time per denoising step", "## Peak memory and compute", "## Against diffusers' `UNet3DConditionModel`", "## Achieved compute",
                    "## Inspection overhead", "## Targets"):
        assert heading in md
    header, rows = _rows(md, "## Time per denoising step")
    assert header[:2] == ["frames", "`tiny` ms/step"] and header[-1] == "speed-up"
    assert [r[0] for r in rows] == ["8", "16"]
    for r in rows:
        assert len(r) == len(header)
        for col in ("`tiny` ms/step", "`tiny-vdm` ms/step", "speed-up"):
            assert _number(r[header.index(col)]) > 0
    header, rows = _rows(md, "## Peak memory and compute")
    assert [r[0] for r in rows] == ["8", "16"]
    for r in rows:
        assert len(r) == len(header)
        for col in ("`tiny` tensors MiB", "`tiny-vdm` tensors MiB", "`tiny` GFLOP", "GFLOP/s"):
            assert _number(r[header.index(col)]) > 0
        assert _number(r[header.index("`tiny` RSS MiB")]) >= 0
    header, rows = _rows(md, "## Against diffusers")
    assert len(rows) == 2 and all(_number(r[header.index("ms/step")]) > 0 for r in rows)
    header, rows = _rows(md, "## Targets")
    assert header == ["target", "measured", "status"]
    statuses = [r[2].strip("*") for r in rows]
    assert set(statuses) <= {"met", "NOT met", "not measured"}
    # 64 and 256 frames were not run: those targets say so instead of guessing
    assert statuses[0] == "not measured" and statuses[2] == "not measured"
    assert len(rows) == len(bench.targets(tiny_results))


def test_worker_process_measures_memory():
    from stunet.config import preset
    cfg = preset("tiny")
    spec = dict(kind="memory", model="stunet", config=cfg.to_dict(), frames=8, batch=2, bf16=True, mem_steps=1,
                threads=1, height=cfg.height, width=cfg.width)
    res = bench.run_cell(spec, isolate=True)
    assert "error" not in res, res.get("error")
    assert res["flops"] > 0 and res["peak_bytes"] > 0 and res["tensor_peak_bytes"] > 0 and res["params"] > 0
    assert res["memory_method"].startswith("VmHWM") or "ru_maxrss" in res["memory_method"]


def test_cli_writes_markdown(tmp_path):
    out = tmp_path / "bench.md"
    rc = bench.main(["--preset", "tiny", "--baseline", "twin", "--frames", "8", "--unet3d-frames", "none",
                     "--warmup", "0", "--repeats", "1", "--threads", "1", "--inspect-rounds", "0",
                     "--matmul-size", "32", "--in-process", "--out", str(out)])
    assert rc == 0
    text = out.read_text()
    assert "## Targets" in text and "python -m stunet bench --preset tiny" in text


def test_bad_frames_is_an_error(capsys):
    assert bench.main(["--preset", "tiny", "--frames", "7", "--in-process", "--out", "-"]) == 2
    assert "divisible" in capsys.readouterr().err


def test_fit_exponent_and_twin():
    from stunet.config import preset
    assert bench.fit_exponent([(16, 1.0), (32, 2.0), (64, 4.0)]) == pytest.approx(1.0)
    assert bench.fit_exponent([(16, 1.0), (32, 4.0)]) == pytest.approx(2.0)
    assert bench.fit_exponent([(16, 1.0)]) is None
    assert bench.vdm_twin(preset("shapes")) == preset("vdm")


def test_unet3d_is_matched_to_the_parameter_count():
    from stunet.config import preset
    cfg = preset("tiny")
    target = bench.stunet_parameters(cfg)
    kw, n = bench.match_unet3d(cfg, target, "matched")
    assert abs(n - target) / target < 0.25
    assert kw["cross_attention_dim"] == cfg.text_dim and len(kw["block_out_channels"]) == cfg.levels
