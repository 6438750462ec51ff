"""Smoke tests of the benchmarks (``benchmarks/``, ``stunet bench``) on the tiny preset at tiny sizes;
no timing assertions, except where a lever is built to be slower."""
from __future__ import annotations

import contextlib
import inspect
import re
import subprocess
import sys
import time

import pytest

from benchmarks import ROOT, cells, levers, report, results, run
from benchmarks.baselines import match_unet3d, stunet_parameters, vdm_twin


@contextlib.contextmanager
def pipeline_with_precision():
    """``Pipeline.from_pretrained(directory, precision=...)``: the real one where the pipeline has it, else
    a stand-in that ignores the precision (so the default-clip cell runs before that change is merged)."""
    from stunet.pipeline import Pipeline
    if "precision" in inspect.signature(Pipeline.from_pretrained).parameters:
        yield
        return
    original = Pipeline.from_pretrained.__func__

    def from_pretrained(cls, directory=None, precision=None):
        return original(cls, directory)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Pipeline, "from_pretrained", classmethod(from_pretrained))
        yield


def _tiny_options(**kw) -> results.Options:
    base = dict(preset="tiny", baseline="twin", frames=(8, 16), unet3d_frames=(8,), unet3d_layouts=("matched",),
                precision="both", warmup=0, repeats=1, mem_steps=1, threads=1, inspect_steps=1, inspect_rounds=1,
                matmul_size=64, matmul_repeats=1, clip=False, levers=("channels_last",), isolate=False,
                overrides=dict(height=16, width=16))
    base.update(kw)
    return results.Options(**base)


@pytest.fixture(scope="module")
def tiny_results(tiny_checkpoint):
    opts = _tiny_options(clip=True, model_dir=str(tiny_checkpoint), clip_overrides=dict(frames=8, steps=2),
                         clip_warmup=0, clip_repeats=1, steps_sweep=(1, 2), steps_repeats=1)
    with pipeline_with_precision():
        return run.run_benchmark(opts, command="pytest", quiet=True)


def _rows(md: str, heading: str) -> tuple[list[str], list[list[str]]]:
    """Header and body rows of the first table after ``heading``."""
    section = md.split(heading, 1)[1]
    table, started = [], False
    for line in section.splitlines():
        if line.startswith("|"):
            table.append([c.strip() for c in line.strip().strip("|").split("|")])
            started = True
        elif started:
            break
    return table[0], table[2:]


def _number(cell: str) -> float:
    m = re.search(r"[-+]?\d+(\.\d+)?", cell.replace(",", ""))
    assert m, f"no number in {cell!r}"
    return float(m.group())


# ============================================================================ one tiny run
def test_cells_are_measured(tiny_results):
    r = tiny_results
    a, b = r.names
    assert (a, b) == ("tiny", "tiny-vdm")
    assert r.precisions == ("fp32", "bf16") and r.chosen == r.verdict["precision"] in ("fp32", "bf16")
    assert r.verdict["reason"].startswith("auto:") and r.cpu_capability not in ("", "?")
    for p in r.precisions:
        for model in (a, b):
            for t in (8, 16):
                c = r.cells[(model, t, p)]
                assert "error" not in c, c.get("error")
                assert all(x > 0 for x in c["times"]) and c["params"] > 0
                assert c["peak_bytes"] >= 0 and c["tensor_peak_bytes"] > 0
                assert results.step_flops(r, model, t) > 0
        u = r.cells[("unet3d-matched", 8, p)]
        assert "error" not in u, u.get("error")
        assert u["params"] == r.params["unet3d-matched"] > 0 and u["times"][0] > 0
    # FLOPs are counted once per (model, frames), in the first precision
    assert "flops" in r.cells[(a, 8, "fp32")] and "flops" not in r.cells[(a, 8, "bf16")]
    # the twin has temporal attention at every level; its attention FLOPs are counted
    assert any("attention" in k for k in r.cells[(b, 8, "fp32")]["flops_by_op"])
    assert results.flop_ratio(r, 16) > 1
    assert results.matmul_gflops(r, "bf16") > 0 and results.matmul_gflops(r, "fp32") > 0
    assert 0 < results.matmul_fraction(r, a, 8, "fp32")
    assert min(r.inspect["plain"]) > 0 and min(r.inspect["inspected"]) > 0 and r.inspect["recorded_bytes"] > 0


def test_default_clip_and_steps_sweep(tiny_results):
    r = tiny_results
    for p in r.precisions:
        c = r.clips[p]
        assert "error" not in c, c.get("error")
        assert c["steps"] == {"default": 2} and c["settings"]["prompt"] == cells.DEFAULT_PROMPT
        assert results.clip_seconds(r, p) > 0
    assert "error" not in r.steps, r.steps.get("error")
    sweep = results.steps_seconds(r)
    assert [n for n, _ in sweep] == [1, 2] and all(s > 0 for _, s in sweep)


def test_levers_are_timed(tiny_results):
    rows = results.lever_rows(tiny_results)
    assert [x.name for x in rows] == ["channels_last"]
    row = rows[0]
    assert row.error is None, row.error
    assert row.without_s > 0 and row.with_s > 0 and row.speedup > 0 and row.first_with_s > 0


def test_markdown_report(tiny_results):
    r = tiny_results
    md = report.render(r)
    for heading in ("## Default clip, end to end", "## Default clip against denoising steps", "## Levers",
                    "## Time per denoising step", "## Peak memory and compute", "## Against diffusers' "
                    "`UNet3DConditionModel`", "## Achieved compute", "## Inspection overhead", "## Targets"):
        assert heading in md
    assert f"CPU capability (`torch.backends.cpu.get_cpu_capability()`): {r.cpu_capability}" in md
    assert r.verdict["reason"] in md
    header, rows = _rows(md, "## Default clip, end to end")
    assert [x[0] for x in rows] == ["fp32", "bf16"] and all(_number(x[1]) > 0 for x in rows)
    header, rows = _rows(md, "## Default clip against denoising steps")
    assert [x[0] for x in rows] == ["1", "2"]
    header, rows = _rows(md, "## Levers")
    assert header[:4] == ["lever", "ms/step without", "ms/step with", "speed-up"]
    assert rows[0][0] == "`channels_last`" and all(_number(x) > 0 for x in rows[0][1:4])
    for p in r.precisions:
        header, rows = _rows(md, f"## Time per denoising step: `tiny` against `tiny-vdm` ({p})")
        assert header[:2] == ["frames", "`tiny` ms/step"] and header[-2:] == ["FLOP ratio", "speed-up"]
        assert [x[0] for x in rows] == ["8", "16"]
        for x in rows:
            assert len(x) == len(header)
            for col in ("`tiny` ms/step", "`tiny-vdm` ms/step", "speed-up"):
                assert _number(x[header.index(col)]) > 0
            assert _number(x[header.index("FLOP ratio")]) == pytest.approx(results.flop_ratio(r, int(x[0])), abs=0.01)
        header, rows = _rows(md, f"## Peak memory and compute per step: `tiny` against `tiny-vdm` ({p})")
        assert [x[0] for x in rows] == ["8", "16"] and f"of {p} matmul" in header
        for x in rows:
            assert len(x) == len(header)
            for col in ("`tiny` tensors MiB", "`tiny-vdm` tensors MiB", "`tiny` GFLOP", "GFLOP/s",
                        f"of {p} matmul"):
                assert _number(x[header.index(col)]) > 0
            assert _number(x[header.index("`tiny` RSS MiB")]) >= 0
    header, rows = _rows(md, "## Against diffusers")
    assert len(rows) == 4 and all(_number(x[header.index("ms/step")]) > 0 for x in rows)
    header, rows = _rows(md, "## Targets")
    assert header == ["target", "measured", "status"]
    statuses = [x[2].strip("*") for x in rows]
    assert set(statuses) <= {"met", "NOT met", "not measured"}
    assert len(rows) == len(report.targets(r))
    parity = [x for x in rows if "efficiency parity" in x[0]]
    assert [x[0][:5] for x in parity] == ["fp32:", "bf16:"]
    assert all(x[2].strip("*") in ("met", "NOT met") and "8:" in x[1] and "16:" in x[1] for x in parity)
    assert not any(re.search(r">= [23]x faster per step than `tiny-vdm`", x[0]) for x in rows)


# ============================================================================ targets, judged on made-up numbers
def _made_up(times_b: float, rss_b: float, flops_b: int = 2_000_000_000) -> results.Results:
    """Results of two models at 16 and 32 frames: `a` 1 s and 1 GFLOP per step; `b` as given."""
    cells_ = {}
    for t in (16, 32):
        cells_[("a", t, "fp32")] = dict(times=[1.0], flops=10 ** 9, peak_bytes=100 * 2 ** 20,
                                        tensor_peak_bytes=50 * 2 ** 20)
        cells_[("b", t, "fp32")] = dict(times=[times_b * t / 16], flops=flops_b, peak_bytes=rss_b * 2 ** 20,
                                        tensor_peak_bytes=60 * 2 ** 20)
    o = results.Options(preset="tiny", frames=(16, 32), unet3d_frames=(), inspect_rounds=0, clip=False)
    return results.Results(o, 1, ("a", "b"), {"a": 1, "b": 1}, {}, cells_, [], None, {}, "", "",
                           precisions=("fp32",), chosen="fp32")


def _status(res, words):
    return next(t.status for t in report.targets(res) if words in t.name)


def test_efficiency_parity_target():
    # FLOP ratio 2: a speed-up of 2.1x or more is parity or better; 1.5x (25 % short) is a miss
    assert _status(_made_up(2.1, 200), "efficiency parity") == "met"          # 32 frames: 4.2x against 2x
    res = _made_up(2.1, 200)
    res.cells[("b", 32, "fp32")]["times"] = [1.85]
    assert _status(res, "efficiency parity") == "met"                         # 7.5 % short: within 10 %
    res.cells[("b", 32, "fp32")]["times"] = [1.5]
    assert _status(res, "efficiency parity") == "NOT met"
    assert results.within_parity(1.95, 2.0, 0.10) and not results.within_parity(1.7, 2.0, 0.10)
    assert results.within_parity(2.5, 2.0, 0.10)          # more efficient than the baseline is not a miss


def test_memory_target_and_not_measured():
    assert _status(_made_up(2.0, 200), "lower peak memory") == "met"
    assert _status(_made_up(2.0, 90), "lower peak memory") == "NOT met"      # `b` takes less RSS
    res = _made_up(2.0, 200)
    res.cells = {}
    assert {t.status for t in report.targets(res)} == {"not measured"}


def test_failed_clip_is_reported_in_its_row():
    res = _made_up(2.0, 200)
    res.opts.clip, res.precisions = True, ("fp32", "bf16")
    res.machine = dict(cpu_model="cpu", cpus=2, cores="?", platform="linux", python="3", torch="t", diffusers="d")
    res.clips = {"fp32": {"error": "RuntimeError: no precision= | merge first"}}
    res.steps = {"error": "RuntimeError: no precision="}
    md = report.render(res)
    section = md.split("## Default clip, end to end", 1)[1].split("##", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| fp32") or line.startswith("| bf16")]
    assert len(rows) == 2 and "no precision= \\| merge first" in rows[0]
    assert all(len(re.split(r"(?<!\\)\|", r)) == 7 for r in rows)          # 5 columns, the "|" escaped
    assert "not measured: RuntimeError: no precision=" in md


def test_precisions_to_run():
    assert results.precisions_to_run("both", "bf16") == ("fp32", "bf16")
    assert results.precisions_to_run("auto", "fp32") == ("fp32",)
    assert results.precisions_to_run("bf16", "fp32") == ("bf16",)
    assert results.chosen_precision("both", "fp32") == "fp32" and results.chosen_precision("bf16", "fp32") == "bf16"
    with pytest.raises(ValueError):
        results.precisions_to_run("fp16", "fp32")


# ============================================================================ levers
def test_lever_selection():
    assert "torch.compile" not in levers.select(None) and "channels_last" in levers.select(None)
    assert levers.select(None, compile=True)[-1] == "torch.compile"
    assert levers.select(()) == []
    with pytest.raises(ValueError, match="unknown lever"):
        levers.select(("warp drive",))


def test_a_registered_lever_is_measured(monkeypatch):
    """A lever is data: one appended to LEVERS is timed; one that slows the step shows a speed-up < 1."""
    from stunet.config import preset

    def slow(step):
        model = step.model

        def call(*a, **k):
            time.sleep(0.3)
            return model(*a, **k)
        step.model = call
        return step

    def broken(step):
        raise RuntimeError("no such kernel")

    monkeypatch.setattr(levers, "LEVERS", levers.LEVERS + [levers.Lever("sleep", slow, "300 ms more per step"),
                                                          levers.Lever("broken", broken)])
    cfg = preset("tiny", height=16, width=16)
    spec = dict(kind="levers", model="stunet", config=cfg.to_dict(), frames=8, batch=2, precision="fp32",
                levers=["sleep", "broken"], warmup=0, repeats=3, threads=1)
    out = cells.run_cell(spec, isolate=False)["levers"]
    assert "no such kernel" in out["broken"]["error"]
    s = out["sleep"]
    # 300 ms of sleep outweighs any scheduling noise on a tiny step
    assert min(s["with"]) > 0.3 and results.med(s["without"]) < results.med(s["with"])


# ============================================================================ processes and the command line
def test_worker_process_measures_memory():
    from stunet.config import preset
    cfg = preset("tiny")
    spec = dict(kind="memory", model="stunet", config=cfg.to_dict(), frames=8, batch=2, precision="bf16",
                mem_steps=1, threads=1, height=cfg.height, width=cfg.width)
    res = cells.run_cell(spec, isolate=True)            # a fresh process from the checkout root
    assert "error" not in res, res.get("error")
    assert res["flops"] > 0 and res["peak_bytes"] > 0 and res["tensor_peak_bytes"] > 0 and res["params"] > 0
    assert res["memory_method"].startswith("VmHWM") or "ru_maxrss" in res["memory_method"]


def test_worker_failure_comes_back_as_an_error():
    res = cells.run_cell(dict(kind="no such kind"), isolate=True)
    assert res == {"error": "ValueError: unknown cell kind 'no such kind'"}


def test_pipeline_without_precision_is_a_clear_error(monkeypatch, tiny_checkpoint):
    from stunet.pipeline import Pipeline

    def old(cls, directory=None):
        raise AssertionError("must not be called")
    monkeypatch.setattr(Pipeline, "from_pretrained", classmethod(old))
    res = cells.run_cell(dict(kind="clip", directory=str(tiny_checkpoint), precision="fp32", steps=[None],
                              warmup=0, repeats=1), isolate=False)
    assert "precision=" in res["error"] and "--no-clip" in res["error"]


_CLI = ["--preset", "tiny", "--baseline", "twin", "--frames", "8", "--unet3d-frames", "none", "--precision", "fp32",
        "--warmup", "0", "--repeats", "1", "--threads", "1", "--inspect-rounds", "0", "--matmul-size", "32",
        "--no-clip", "--levers", "none", "--in-process"]


def test_cli_writes_only_where_asked(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    report_md = ROOT / "docs" / "benchmark.md"
    before = report_md.stat().st_mtime_ns if report_md.exists() else None
    assert run.main(_CLI) == 0
    assert "## Targets" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []                        # nothing written without --out / --json
    assert (report_md.stat().st_mtime_ns if report_md.exists() else None) == before
    out, js = tmp_path / "b.md", tmp_path / "b.json"
    assert run.main(_CLI + ["--out", str(out), "--json", str(js)]) == 0
    text = out.read_text()
    assert "python -m benchmarks.run --preset tiny" in text and "timed in fp32" in text
    assert "## Time per denoising step: `tiny` against `tiny-vdm` (fp32)" in text and "(bf16)" not in text
    assert '"tiny@8@fp32"' in js.read_text()


def test_stunet_bench_runs_the_checkouts_benchmarks(tmp_path, monkeypatch, capsys):
    from stunet import cli
    out = tmp_path / "b.md"
    assert cli.main(["bench"] + _CLI + ["--out", str(out)]) == 0
    assert "stunet bench --preset tiny" in out.read_text()
    # an installed stunet without its checkout says so
    monkeypatch.setattr(cli, "__file__", str(tmp_path / "site-packages" / "stunet" / "cli.py"))
    capsys.readouterr()
    assert cli.main(["bench", "--quick"]) == 2
    assert "source checkout" in capsys.readouterr().err


def test_run_as_a_script():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--help"], capture_output=True,
                          text=True, cwd="/", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--precision" in proc.stdout and "--compile" in proc.stdout and "--fp32" not in proc.stdout


def test_bad_frames_is_an_error(capsys):
    assert run.main(["--preset", "tiny", "--frames", "7", "--in-process", "--no-clip"]) == 2
    assert "divisible" in capsys.readouterr().err


def test_fit_exponent_and_twin():
    from stunet.config import preset
    assert results.fit_exponent([(16, 1.0), (32, 2.0), (64, 4.0)]) == pytest.approx(1.0)
    assert results.fit_exponent([(16, 1.0), (32, 4.0)]) == pytest.approx(2.0)
    assert results.fit_exponent([(16, 1.0)]) is None
    assert vdm_twin(preset("shapes")) == preset("vdm")


def test_unet3d_is_matched_to_the_parameter_count():
    from stunet.config import preset
    cfg = preset("tiny")
    target = stunet_parameters(cfg)
    kw, n = match_unet3d(cfg, target, "matched")
    assert abs(n - target) / target < 0.25
    assert kw["cross_attention_dim"] == cfg.text_dim and len(kw["block_out_channels"]) == cfg.levels


def test_legacy_temporal_columns_compute_what_the_library_computes():
    """The temporal-conv lever's "without" state is the same function, only slower."""
    import copy

    import torch

    from benchmarks.legacy import temporal_on_columns
    from conftest import make_tiny
    from stunet.text import TextEncoding
    model = make_tiny(seed=3)
    legacy = temporal_on_columns(copy.deepcopy(model))
    swapped = [m for m in legacy.modules() if "forward" in vars(m)]
    assert swapped, "no temporal module was swapped"
    x = torch.randn(2, 3, 8, 16, 16, generator=torch.Generator().manual_seed(0))
    ids = torch.zeros(2, 1 + model.config.max_words, dtype=torch.long)
    with torch.no_grad():
        text: TextEncoding = model.encode_text(ids)
        a = model(x, torch.tensor([10, 500]), text)
        b = legacy(x, torch.tensor([10, 500]), text)
    assert torch.allclose(a, b, atol=1e-5)


def test_clip_ab_runs(capsys, tiny_checkpoint, monkeypatch):
    monkeypatch.setenv("STUNET_MODEL", str(tiny_checkpoint))
    from benchmarks import clip_ab
    assert clip_ab.main(["--steps", "1", "--rounds", "1", "--precision", "fp32"]) == 0
    out = capsys.readouterr().out
    assert "columns (before)" in out and "grid (now)" in out and "precision fp32" in out
