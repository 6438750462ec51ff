"""``stunet space``: export a Hugging Face Space folder (ZeroGPU or CPU basic), check it against the Hub's rules and
ZeroGPU's, push it; the studio's ZeroGPU decoration (``demo.gpu``) with a stand-in ``spaces`` package."""
from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
import time
import types
import urllib.request
from pathlib import Path

import pytest

from stunet import space
from stunet.cli import main

ROOT = Path(__file__).resolve().parent.parent
GRADIO_PIN = space.pinned_version(space.read_requirements(ROOT / "requirements.txt"), "gradio")
TOKEN = "hf_SENTINELtokenNEVERprinted0123456789"
GOOD_README = f"""---
title: t
sdk: gradio
sdk_version: {GRADIO_PIN}
python_version: "3.11"
app_file: app.py
---

# t
"""
GOOD_REQUIREMENTS = f"""--extra-index-url https://download.pytorch.org/whl/cpu
torch==2.13.0+cpu
gradio=={GRADIO_PIN}
"""
ZERO_README = GOOD_README.replace('python_version: "3.11"', 'python_version: "3.12.12"\nsuggested_hardware: zero-a10g')
ZERO_REQUIREMENTS = f"""spaces==0.51.3
torch=={space.ZERO_GPU_TORCH[-1]}
gradio=={GRADIO_PIN}
"""


@pytest.fixture
def good(tmp_path) -> Path:
    """A small folder that passes every rule: text files, one binary under an LFS pattern."""
    d = tmp_path / "space"
    (d / "pkg").mkdir(parents=True)
    (d / "README.md").write_text(GOOD_README)
    (d / "requirements.txt").write_text(GOOD_REQUIREMENTS)
    (d / "app.py").write_text("print('hi')\n")
    (d / "pkg" / "mod.py").write_text("x = 'é'\n")
    (d / "pkg" / "weights.safetensors").write_bytes(b"\x00\x01\x02binary")
    (d / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    return d


@pytest.fixture
def zero(good) -> Path:
    """The good folder as a ZeroGPU Space: spaces, a CUDA torch ZeroGPU supports, its hardware and Python."""
    (good / "README.md").write_text(ZERO_README)
    (good / "requirements.txt").write_text(ZERO_REQUIREMENTS)
    return good


def rules(problems) -> set[str]:
    return {p.rule for p in problems}


def test_good_fixture_passes(good):
    assert space.check(good) == []
    assert main(["space", "check", str(good)]) == 0


def test_binary_by_content_not_covered_fails(good):
    """A binary without a binary extension is caught by its content (NUL or not UTF-8)."""
    (good / "pkg" / "data.txt").write_bytes(b"abc\x00def")
    (good / "pkg" / "latin1.md").write_bytes("caf\xe9".encode("latin-1"))
    problems = space.check(good)
    assert {(p.path, p.rule) for p in problems} == {("pkg/data.txt", "binary-not-lfs"),
                                                     ("pkg/latin1.md", "binary-not-lfs")}
    (good / ".gitattributes").write_text("*.safetensors filter=lfs\npkg/*.txt filter=lfs\n*.md filter=lfs\n"
                                         "README.md -filter\n")
    assert space.check(good) == []


def test_gitattributes_later_lines_and_paths_decide():
    r = space.lfs_rules("*.png filter=lfs diff=lfs merge=lfs -text\nassets/**/*.bin filter=lfs\n"
                        "keep.png !filter\n# *.gif filter=lfs\n")
    assert space.lfs_covered("a/b/x.png", r) and not space.lfs_covered("a/keep.png", r)
    assert space.lfs_covered("assets/x.bin", r) and space.lfs_covered("assets/a/b/x.bin", r)
    assert not space.lfs_covered("other/x.bin", r) and not space.lfs_covered("x.gif", r)


def test_large_text_file_not_covered_fails(good):
    (good / "big.txt").write_text("a" * (space.MAX_PLAIN_BYTES + 1))
    assert [(p.path, p.rule) for p in space.check(good)] == [("big.txt", "large-not-lfs")]
    (good / ".gitattributes").write_text("*.safetensors filter=lfs\nbig.txt filter=lfs\n")
    assert space.check(good) == []


def sparse(path: Path, size: int):
    with open(path, "wb") as f:
        f.truncate(size)


def test_file_over_1gb_fails_even_in_lfs(good):
    sparse(good / "pkg" / "huge.safetensors", space.MAX_FILE_BYTES + 1)
    assert [(p.path, p.rule) for p in space.check(good)] == [("pkg/huge.safetensors", "file-too-large")]


def test_total_over_limit_fails(good):
    for i in range(2):
        sparse(good / "pkg" / f"part{i}.safetensors", space.MAX_TOTAL_BYTES // 2 + 1)
    assert [(p.path, p.rule) for p in space.check(good)] == [(".", "total-too-large")]


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("sdk: gradio", "sdk: streamlit"), "sdk must be gradio"),
    (lambda t: t.replace(f"sdk_version: {GRADIO_PIN}", "sdk_version: 5.0.0"), "differs from the gradio pin"),
    (lambda t: re.sub(r"sdk_version: .*\n", "", t), "sdk_version missing"),
    (lambda t: t.replace("app_file: app.py", "app_file: main.py"), "'main.py' is not a file"),
    (lambda t: t.replace("app_file: app.py", "app_file: ../app.py"), "is not a file in the folder"),
    (lambda t: re.sub(r"python_version: .*\n", "", t), "python_version missing"),
    (lambda t: t.split("---\n", 2)[2], "no YAML front matter"),
])
def test_front_matter_rules(good, edit, message):
    readme = good / "README.md"
    readme.write_text(edit(readme.read_text()))
    problems = space.check(good)
    assert rules(problems) == {"front-matter"} and all(p.path == "README.md" for p in problems)
    assert message in str(problems)


def test_missing_readme_fails(good):
    (good / "README.md").unlink()
    assert [(p.path, p.rule) for p in space.check(good)] == [("README.md", "front-matter")]


@pytest.mark.parametrize("requirements, message", [
    ("torch==2.13.0\ngradio=={g}\n", "without --extra-index-url"),
    ("torch\ngradio=={g}\n", "not pinned"),
    ("--extra-index-url https://download.pytorch.org/whl/cpu\ntorch>=2\ngradio=={g}\n", "not pinned"),
    ("torch==2.13.0+cpu\ngradio=={g}\n", "+cpu versions exist only there"),
    ("gradio=={g}\n", "no torch pin"),
])
def test_requirements_that_pull_cuda_torch_fail(good, requirements, message):
    (good / "requirements.txt").write_text(requirements.format(g=GRADIO_PIN))
    problems = space.check(good)
    assert [(p.path, p.rule) for p in problems] == [("requirements.txt", "cuda-torch")]
    assert message in problems[0].message


def test_a_cpu_space_with_the_zero_gpu_requirements_fails(good):
    """A CPU export that would pull a CUDA torch (PyPI's default build) fails, naming the rule."""
    (good / "requirements.txt").write_text(ZERO_REQUIREMENTS)
    problems = space.check(good)
    assert [(p.path, p.rule) for p in problems] == [("requirements.txt", "cuda-torch")]
    assert space.hardware_of(good) == "cpu-basic"


def test_zero_gpu_fixture_passes(zero):
    assert space.hardware_of(zero) == "zero-gpu"
    assert space.check(zero) == []
    assert main(["space", "check", str(zero)]) == 0


@pytest.mark.parametrize("requirements, rule, message", [
    ("torch=={t}\ngradio=={g}\n", "zero-gpu-spaces", "no spaces package"),
    ("spaces\n--extra-index-url https://download.pytorch.org/whl/cpu\ntorch=={t}+cpu\ngradio=={g}\n", "cpu-torch",
     "a +cpu version"),
    ("spaces\n--index-url https://download.pytorch.org/whl/cpu\ntorch=={t}\ngradio=={g}\n", "cpu-torch",
     "the CPU index"),
    ("spaces\ntorch==2.13.0\ngradio=={g}\n", "zero-gpu-torch", "a version ZeroGPU supports"),
    ("spaces\ntorch>=2.8\ngradio=={g}\n", "zero-gpu-torch", "not pinned"),
    ("spaces\ngradio=={g}\n", "zero-gpu-torch", "no torch pin"),
])
def test_zero_gpu_requirements_rules(zero, requirements, rule, message):
    (zero / "requirements.txt").write_text(requirements.format(t=space.ZERO_GPU_TORCH[-1], g=GRADIO_PIN))
    problems = space.check(zero)
    assert [(p.path, p.rule) for p in problems] == [("requirements.txt", rule)]
    assert message in problems[0].message


@pytest.mark.parametrize("python, ok", [("3.11", False), ("3.13.0", False), ("3.12.1", False), ("3.12", True),
                                        ("3.10.13", True)])
def test_zero_gpu_python_rule(zero, python, ok):
    readme = zero / "README.md"
    readme.write_text(readme.read_text().replace('"3.12.12"', f'"{python}"'))
    problems = space.check(zero)
    assert [(p.path, p.rule) for p in problems] == ([] if ok else [("README.md", "zero-gpu-python")])


def test_unknown_hardware_fails(good):
    readme = good / "README.md"
    readme.write_text(readme.read_text().replace("app_file: app.py", "app_file: app.py\nsuggested_hardware: t4-small"))
    problems = space.check(good)
    assert [(p.path, p.rule) for p in problems] == [("README.md", "front-matter")]
    assert "zero-a10g" in problems[0].message


def test_cpu_index_with_plain_pin_passes(good):
    (good / "requirements.txt").write_text(f"--index-url https://download.pytorch.org/whl/cpu\ntorch==2.13.0\n"
                                           f"gradio=={GRADIO_PIN}\n")
    assert space.check(good) == []


def test_symlinks_fail(good, tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("secret\n")
    (good / "link.txt").symlink_to(outside)
    (good / "inside.py").symlink_to(good / "app.py")
    (good / "linkdir").symlink_to(tmp_path)
    problems = space.check(good)
    assert {(p.path, p.rule) for p in problems} == {("link.txt", "outside-folder"), ("inside.py", "outside-folder"),
                                                     ("linkdir", "outside-folder")}


def test_git_folder_is_skipped(good):
    (good / ".git" / "objects").mkdir(parents=True)
    (good / ".git" / "objects" / "pack").write_bytes(b"\x00" * 100)
    assert space.check(good) == []


def test_cli_check_names_file_and_rule(good, capsys):
    (good / "blob").write_bytes(b"\x89PNG\r\n\x1a\n\x00")
    assert main(["space", "check", str(good)]) == 1
    assert "blob: [binary-not-lfs]" in capsys.readouterr().err


# ---------------------------------------------------------------------------- export
@pytest.mark.parametrize("hardware", [None, "zero-gpu", "cpu-basic"])
def test_export_writes_exactly_the_space(tmp_path, capsys, hardware):
    out = tmp_path / "sp"
    assert main(["space", "export", str(out)] + (["--hardware", hardware] if hardware else [])) == 0
    assert "ready for a Space" in capsys.readouterr().out
    hardware = hardware or space.DEFAULT_HARDWARE
    files = {f.relative_to(out).as_posix() for f in space.list_files(out)}
    model = {f"{d.as_posix()}/{n}" for d, names in space.exported_models(ROOT).items() for n in names}
    assert {f"assets/stunet-shapes/{n}" for n in space.SHIPPED_MODEL_FILES} <= model
    code = {p.relative_to(ROOT).as_posix() for d in ("stunet", "demo") for p in (ROOT / d).rglob("*.py")
            if "__pycache__" not in p.parts}
    assert "stunet/shapes/world.py" in code                     # subpackages go too
    assert files == {"app.py", "README.md", "requirements.txt", ".gitattributes"} | model | code
    assert not any("__pycache__" in f or "train_state" in f or f.endswith(".log") for f in files)
    assert (out / "assets/stunet-shapes/model.safetensors").read_bytes() == \
        (ROOT / "assets/stunet-shapes/model.safetensors").read_bytes()
    fm = space.parse_front_matter((out / "README.md").read_text())
    assert fm["sdk"] == "gradio" and fm["sdk_version"] == GRADIO_PIN and fm["app_file"] == "app.py"
    assert fm["python_version"] and fm["suggested_hardware"] == space.HARDWARE[hardware] and fm["short_description"]
    req = space.read_requirements(out / "requirements.txt")
    torch_pin = space.pinned_version(space.read_requirements(ROOT / "requirements.txt"), "torch")
    if hardware == "zero-gpu":
        assert space.SPACES_PIN in req and not any(space.CPU_INDEX in l for l in req)
        assert f"torch=={space.zero_gpu_torch(torch_pin)}" in req and fm["python_version"] in space.ZERO_GPU_PYTHON
        assert space.hardware_of(out) == "zero-gpu"
    else:
        assert f"--extra-index-url {space.CPU_INDEX}" in req
        assert f"torch=={torch_pin.split('+')[0]}+cpu" in req
    other = [l for l in space.read_requirements(ROOT / "requirements.txt") if not l.startswith("torch")]
    assert all(l in req for l in other)                       # every other pin copied as it is
    r = space.lfs_rules((out / ".gitattributes").read_text())
    for ext in ("safetensors", "png", "gif", "mp4", "npz", "jpg", "webp"):
        assert space.lfs_covered(f"x/y.{ext}", r)
    assert space.check(out) == []


def test_exported_models_take_the_optional_ones_and_every_style(tmp_path):
    assert space.exported_models(tmp_path) == {space.SHIPPED_MODEL: space.SHIPPED_MODEL_FILES}
    for d in (space.ONE_PASS_MODEL, space.SSR_MODEL, space.STYLES / "outline", space.STYLES / "stripes",
              space.STYLES / "notastyle"):
        (tmp_path / d).mkdir(parents=True)
    for name in ("outline", "stripes"):
        (tmp_path / space.STYLES / name / "style.json").write_text("{}")
    m = space.exported_models(tmp_path)
    assert m[space.ONE_PASS_MODEL] == space.ONE_PASS_MODEL_FILES and m[space.STYLES] == space.STYLES_FILES
    assert m[space.STYLES / "outline"] == m[space.STYLES / "stripes"] == space.STYLE_FILES
    assert space.STYLES / "notastyle" not in m and space.FAST_MODEL not in m
    assert m[space.SSR_MODEL] == space.SSR_MODEL_FILES
    (tmp_path / "requirements.txt").write_text((ROOT / "requirements.txt").read_text())
    with pytest.raises(space.SpaceError, match="stunet-shapes-styles/outline/style.safetensors"):
        space.export(tmp_path / "out", root=tmp_path)            # a style missing its weights is named


def test_export_refuses_non_empty_folder_and_overwrite_replaces(tmp_path, capsys):
    out = tmp_path / "sp"
    out.mkdir()
    (out / "precious.txt").write_text("keep me\n")
    assert main(["space", "export", str(out)]) == 1
    assert "not empty" in capsys.readouterr().err and (out / "precious.txt").read_text() == "keep me\n"
    assert sorted(p.name for p in out.iterdir()) == ["precious.txt"]          # nothing written either
    (out / ".git").mkdir()
    (out / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    assert main(["space", "export", str(out), "--overwrite"]) == 0
    assert not (out / "precious.txt").exists() and (out / ".git" / "HEAD").is_file()
    with pytest.raises(space.SpaceError, match="project's own files"):
        space.export(ROOT, overwrite=True)
    with pytest.raises(space.SpaceError, match="project's own files"):
        space.export(ROOT / "stunet" / "x", overwrite=True)


def test_export_gitattributes_covers_binaries_without_known_extension(tmp_path):
    (tmp_path / "a.dat").write_bytes(b"\x00\x01")
    (tmp_path / "noext").write_bytes(b"\xff\xfe")
    (tmp_path / "t.txt").write_text("text\n")
    text = space.gitattributes_for(space.list_files(tmp_path), tmp_path)
    r = space.lfs_rules(text)
    assert space.lfs_covered("a.dat", r) and space.lfs_covered("noext", r) and not space.lfs_covered("t.txt", r)


def test_space_requirements_refuses_unpinned_torch():
    with pytest.raises(space.SpaceError, match="pinned"):
        space.space_requirements(["torch>=2", "gradio==6.31.0"])
    with pytest.raises(space.SpaceError, match="pinned"):
        space.space_requirements(["torch>=2", "gradio==6.31.0"], "zero-gpu")
    with pytest.raises(space.SpaceError, match="--hardware"):
        space.space_requirements(["torch==2.1.0"], "t4-small")
    assert "torch==2.1.0+cpu" in space.space_requirements(["torch==2.1.0+cu121"])


def test_zero_gpu_torch_is_the_projects_if_supported_else_the_newest_supported():
    assert space.zero_gpu_torch("2.9.1+cpu") == "2.9.1"
    assert space.zero_gpu_torch("2.13.0") == space.ZERO_GPU_TORCH[-1]
    req = space.space_requirements([f"--extra-index-url {space.CPU_INDEX}", "torch==2.10.0+cpu", "spaces==0.1",
                                    "numpy==2.4.6"], "zero-gpu")
    assert [l for l in req.splitlines() if not l.startswith("#")] == [space.SPACES_PIN, "torch==2.10.0", "numpy==2.4.6"]


# ---------------------------------------------------------------------------- push
class FakeApi:
    """Records calls like ``huggingface_hub.HfApi`` would receive them."""
    instances: list = []

    def __init__(self, *args, fail: Exception | None = None, **kwargs):
        self.calls, self.fail = [], fail
        FakeApi.instances.append(self)

    def create_repo(self, repo_id, **kw):
        self.calls.append(("create_repo", repo_id, kw))
        if self.fail:
            raise self.fail

    def upload_folder(self, **kw):
        self.calls.append(("upload_folder", kw))


def test_push_creates_space_and_uploads(good, capsys, caplog, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    api = FakeApi()
    url = space.push(good, "me/stunet", private=True, api=api)
    assert url == "https://huggingface.co/spaces/me/stunet"
    (c1, repo, kw1), (c2, kw2) = api.calls
    assert (c1, repo, kw1["repo_type"], kw1["space_sdk"], kw1["exist_ok"], kw1["private"], kw1["space_hardware"]) == \
        ("create_repo", "me/stunet", "space", "gradio", True, True, "cpu-basic")
    assert (c2, kw2["folder_path"], kw2["repo_id"], kw2["repo_type"]) == ("upload_folder", str(good), "me/stunet",
                                                                          "space")
    # through the CLI, with HfApi itself replaced
    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    FakeApi.instances.clear()
    assert main(["space", "push", str(good), "--repo", "me/other"]) == 0
    assert FakeApi.instances[0].calls[0][2]["private"] is False
    out = capsys.readouterr()
    assert "spaces/me/other" in out.out
    assert TOKEN not in out.out + out.err + caplog.text


def test_push_creates_a_zero_gpu_space_on_zero_gpu(zero):
    api = FakeApi()
    space.push(zero, "me/stunet", api=api)
    assert api.calls[0][2]["space_hardware"] == "zero-a10g"


def test_push_refuses_failing_folder_and_bad_repo(good, capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    api = FakeApi()
    with pytest.raises(space.SpaceError, match="OWNER/NAME"):
        space.push(good, "no-owner", api=api)
    (good / "requirements.txt").write_text("torch==2.13.0\n")
    with pytest.raises(space.SpaceError, match="nothing pushed"):
        space.push(good, "me/stunet", api=api)
    assert api.calls == []
    assert main(["space", "push", str(good), "--repo", "me/stunet"]) == 1
    err = capsys.readouterr().err
    assert "cuda-torch" in err and TOKEN not in err


def test_push_error_from_hub_is_reported_without_token(good, capsys, monkeypatch):
    import huggingface_hub
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda *a, **k: FakeApi(fail=OSError("403 Forbidden: quota")))
    assert main(["space", "push", str(good), "--repo", "me/stunet"]) == 1
    out = capsys.readouterr()
    assert "403 Forbidden" in out.err and TOKEN not in out.out + out.err


# ---------------------------------------------------------------------------- ZeroGPU: what runs on the GPU
FAKE_SPACES = '''"""A stand-in for Hugging Face's ``spaces`` package (tests): ``GPU`` records what it decorates,
and runs it in this process with its arguments and every result pickled both ways, as ZeroGPU's worker has them."""
import functools
import inspect
import pickle
import threading

decorated = []                 # (function name, duration), in the order decorated
auto_wrap = ["enabled"]
_state = threading.local()


def on_gpu():
    """True while a decorated function runs (in this thread)."""
    return getattr(_state, "depth", 0) > 0


def _cross(value):
    return pickle.loads(pickle.dumps(value))


class _Inside:
    def __enter__(self):
        _state.depth = getattr(_state, "depth", 0) + 1

    def __exit__(self, *exc):
        _state.depth -= 1


def GPU(task=None, *, duration=None, size=None):
    if task is None:
        return lambda fn: GPU(fn, duration=duration, size=size)
    decorated.append((getattr(task, "__name__", repr(task)), duration))
    if inspect.isgeneratorfunction(task):
        @functools.wraps(task)
        def generator(*args, **kwargs):
            args, kwargs = _cross((args, kwargs))
            it = task(*args, **kwargs)
            while True:
                with _Inside():
                    try:
                        out = next(it)
                    except StopIteration:
                        return
                yield _cross(out)
        return generator

    @functools.wraps(task)
    def function(*args, **kwargs):
        args, kwargs = _cross((args, kwargs))
        with _Inside():
            out = task(*args, **kwargs)
        return _cross(out)
    return function


def disable_gradio_auto_wrap():
    auto_wrap[0] = "disabled"


def gradio_auto_wrap(task):
    return task
'''
# Every function that runs the network, so holds a GPU on ZeroGPU: Generate, the recording the Inspect views ask
# for (the clip sampled again with hooks), the Edit tab's sampling, Compare, and the Intervene tab's runs. A new
# handler that runs the network is decorated with demo.gpu.gpu and named here.
NETWORK_HANDLERS = {"generate", "record", "_run", "compare", "intervene", "track", "summary"}


def fake_spaces() -> types.ModuleType:
    m = types.ModuleType("spaces")
    exec(compile(FAKE_SPACES, "fake_spaces.py", "exec"), m.__dict__)
    return m


def on_gpu_probe(fake, models) -> list:
    """Forward pre-hooks on ``models`` that note, for every network call, whether it ran inside @spaces.GPU."""
    calls = []
    for m in {id(m): m for m in models}.values():
        m.register_forward_pre_hook(lambda mod, args: calls.append(fake.on_gpu()))
    return calls


def test_gpu_shim_is_the_function_itself_without_spaces(monkeypatch):
    from demo import gpu
    monkeypatch.setattr(gpu, "spaces", None)
    fn = lambda: 1                                                       # noqa: E731
    assert gpu.gpu(fn, 30) is fn


def test_durations_fit_the_largest_request_and_shrink_with_the_work(tiny_model, tiny_tokenizer):
    """The duration asked of ZeroGPU: the largest allowed request (50 steps, 128 frames, guided) under the cap
    (ZeroGPU's default 60 s, which every tier may ask), a default clip less, out-of-range inputs as the largest."""
    from demo import gpu
    from demo import limits as L
    from demo.studio import Studio
    from stunet.pipeline import Pipeline
    studio = Studio(Pipeline(tiny_model, tiny_tokenizer, "fp32"))
    dur = gpu.generate_duration(studio)
    hi = L.frames_range(studio.factor, studio.window)[1]
    largest = dur("a red circle", 0, L.MAX_STEPS, L.MAX_GUIDANCE, hi)
    default = dur("a red circle", 0, 25, 3.0, 32)
    assert gpu.START_S < default < largest <= gpu.MAX_DURATION_S
    assert dur("a red circle", 0, 999, "x", -4) == largest and dur() == largest
    assert dur("a red circle", 0, 25, 1.0, 32) <= default               # no guidance: one row per window
    assert gpu.clip_seconds(25, 32, 1) < gpu.clip_seconds(25, 32, 2)
    assert gpu.clip_seconds(50, 128, 2) > gpu.clip_seconds(50, 32, 2) > gpu.clip_seconds(25, 32, 2)
    assert gpu.compare_duration(studio) <= gpu.MAX_DURATION_S and gpu.edit_duration(studio)(None) == largest


def test_forward_flops_constant_is_the_shipped_models():
    """demo.gpu.FORWARD_GFLOP: one forward of the shipped model on one window, counted again."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from demo import gpu
    from stunet.checkpoint import read_config
    from stunet.model import STUNet
    cfg = read_config(ROOT / "assets" / "stunet-shapes")
    model = STUNet(cfg).eval()
    x = torch.zeros(1, cfg.video_channels, cfg.frames, cfg.height, cfg.width)
    with torch.no_grad():
        text = model.encode_text(torch.zeros(1, cfg.max_words, dtype=torch.long))
        with FlopCounterMode(display=False) as counter:
            model(x, torch.zeros(1, dtype=torch.long), text, 1, None, None)
    assert counter.get_total_flops() / 1e9 == pytest.approx(gpu.FORWARD_GFLOP, rel=0.05)


def test_the_studio_runs_the_network_only_inside_spaces_gpu(tiny_model, tiny_tokenizer, tmp_path_factory,
                                                           monkeypatch):
    """With a stand-in ``spaces``: exactly the functions that run the network are decorated (``NETWORK_HANDLERS``),
    each with a duration; a clip, its recording and the Inspect views, an edit and Compare run, every network
    call inside a decorated function, their arguments and results crossing a process boundary (pickled)."""
    from demo import gpu
    from demo.app import build_demo
    from stunet.cascade import load_pipeline
    from stunet.cascade.testing import save_tiny_cascade
    from stunet.defaults import SamplingDefaults
    from stunet.pipeline import Pipeline
    fake = fake_spaces()
    monkeypatch.setattr(gpu, "spaces", fake)
    pipe = Pipeline(tiny_model, tiny_tokenizer, "fp32", SamplingDefaults(steps=2, sampler="ddim"))
    cascade = load_pipeline(save_tiny_cascade(tmp_path_factory.mktemp("zg-cascade"), steps=2), precision="fp32")
    d = build_demo(pipe, warm=False, janitor=False, cascade=cascade)
    try:
        names = [n for n, _ in fake.decorated]
        assert sorted(names) == sorted(NETWORK_HANDLERS), "a handler that runs the network: see NETWORK_HANDLERS"
        assert all(callable(t) or isinstance(t, int) for _, t in fake.decorated)
        calls = on_gpu_probe(fake, [pipe.model, cascade.keyframe_model, cascade.tsr_model])
        fns = {f.api_name: f.fn for f in d.fns.values() if f.api_name}
        out = list(fns["generate"]("a red circle moving right", 0, 2, 3.0, 8, "ddim"))[-1]
        rec = out[-1]
        assert rec.video.shape[0] == 8 and Path(rec.mp4).stat().st_size > 0 and len(calls) == 2
        d.studio.render_all(rec)                                        # records the clip first, if it must
        n = len(calls)
        fns["features"](rec, 1)
        fns["temporal_attention"](rec, 1, rec.recording.temporal_layers()[0], "mean", "average over all positions",
                                  0, 0, False)
        fns["xt_slice"](rec, 4, 1)
        fns["export_npz"](rec)
        assert len(calls) == n                                          # the views read the recording only
        edited = list(fns["video_to_video"](rec, "last", None, "a blue circle moving left", 0, 2, 3.0, 1.0, 8))[-1]
        assert edited[-1].edit["mode"] == "video_to_video" and len(calls) == n + 2
        fns["compare"]("a blue square quickly spinning", 0)
        assert len(calls) > n + 2 and all(calls)
    finally:
        d.close()


# ---------------------------------------------------------------------------- the exported folder runs
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PROBE = '''"""Run in an exported ZeroGPU folder with the stand-in spaces package: what is decorated, a default clip on
the CPU, the Inspect views, an edit; prints RESULT {json}."""
import importlib
import json
import os

import spaces

app = importlib.import_module("app")            # the exported app.py: the page; SPACES_ZERO_GPU: models loaded now
blocks, gpu = app.demo, importlib.import_module("demo.gpu")
studio = blocks.studio
models = [studio.pipe.model] + [studio.pipe_for(c.key).model for c in studio.choices[1:]]
calls = []
for m in {id(m): m for m in models}.values():
    m.register_forward_pre_hook(lambda mod, args: calls.append(spaces.on_gpu()))
fns = {f.api_name: f.fn for f in blocks.fns.values() if f.api_name}
d = studio.choices[0].defaults
out = list(fns["generate"]("a red circle moving right", 0, d.steps, d.guidance, studio.window, d.sampler))[-1]
rec, n_clip = out[-1], len(calls)
studio.render_all(rec)                          # records the clip first, if it must
n_record = len(calls)
fns["features"](rec, d.steps - 1)
fns["xt_slice"](rec, 16, d.steps - 1)
n_views = len(calls)
edited = list(fns["video_to_video"](rec, "last", None, "a blue circle moving left", 0, 2, 3.0, 1.0, 8))[-1][-1]
durations = dict(spaces.decorated)
print("RESULT " + json.dumps(dict(
    stunet=importlib.import_module("stunet").__file__, device=str(studio.pipe.device), zero_gpu=gpu.ZERO_GPU,
    loaded_at_build=studio._pipe is not None, auto_wrap=spaces.auto_wrap[0],
    decorated={n: "callable" if callable(t) else t for n, t in spaces.decorated},
    default=durations["generate"]("a red circle moving right", 0, d.steps, d.guidance, studio.window, d.sampler),
    largest=durations["generate"]("a red circle moving right", 0, 50, 10.0, 128),
    calls=[n_clip, n_record, n_views, len(calls)], all_on_gpu=all(calls), steps=d.steps, video=list(rec.video.shape),
    mp4=os.path.getsize(rec.mp4), edited=edited.edit["mode"], clip_seconds=rec.seconds)))
'''


@pytest.mark.integration
def test_exported_zero_gpu_app_decorates_the_network_handlers_and_serves_a_default_clip_on_cpu(tmp_path):
    """The exported ZeroGPU folder, run with a stand-in ``spaces`` (on ZeroGPU hardware, as the environment says)
    on a machine without a GPU: exactly the network handlers are decorated, each with a duration; the models are
    loaded while the page is built; a default clip, its recording and Inspect views, and an edit work on the CPU,
    and every network call runs inside a decorated function."""
    import json
    out = tmp_path / "sp"
    space.export(out, hardware="zero-gpu")
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "spaces.py").write_text(FAKE_SPACES)
    (tmp_path / "probe.py").write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "STUNET_", "SPACES_"))}
    env.update(PYTHONPATH=os.pathsep.join([str(fake), str(out)]), SPACES_ZERO_GPU="true",
               GRADIO_ANALYTICS_ENABLED="False", CUDA_VISIBLE_DEVICES="")
    r = subprocess.run([sys.executable, str(tmp_path / "probe.py")], cwd=out, env=env, capture_output=True,
                       text=True, timeout=600)
    lines = [l for l in r.stdout.splitlines() if l.startswith("RESULT ")]
    assert r.returncode == 0 and lines, (r.stdout + r.stderr)[-3000:]
    res = json.loads(lines[-1][len("RESULT "):])
    assert Path(res["stunet"]).resolve().is_relative_to(out.resolve())
    expected = NETWORK_HANDLERS if (ROOT / space.CASCADE_MODEL).is_dir() else NETWORK_HANDLERS - {"compare"}
    assert set(res["decorated"]) == expected and all(t is not None for t in res["decorated"].values())
    assert res["zero_gpu"] and res["loaded_at_build"] and res["auto_wrap"] == "disabled" and res["device"] == "cpu"
    assert res["default"] < res["largest"] <= 60
    assert res["video"][0] == 32 and res["mp4"] > 0 and res["edited"] == "video_to_video"
    n_clip, n_record, n_views, n_all = res["calls"]
    assert n_clip == res["steps"] and n_views == n_record and n_all > n_views and res["all_on_gpu"]
    print(f"ZeroGPU export on CPU: a default clip ({res['steps']} steps) in {res['clip_seconds']:.1f} s; "
          f"durations asked: default {res['default']} s, largest {res['largest']} s")


@pytest.mark.integration
def test_exported_folder_runs_on_its_own(tmp_path):
    """``python app.py`` in the exported folder serves /generate with the folder's own stunet, demo and model.

    The checkout is not on PYTHONPATH; the editable install's finder would map ``stunet`` to the
    checkout, so the server runs under ``python -v`` and the test reads where ``stunet`` and
    ``demo`` were imported from (every path must be inside the folder).
    """
    from gradio_client import Client
    out = tmp_path / "sp"
    space.export(out)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "STUNET_MODEL")}
    env.update(GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1", GRADIO_ANALYTICS_ENABLED="False")
    log_path = tmp_path / "server.log"
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-v", "app.py"], cwd=out, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        while time.perf_counter() - t0 < 120 and proc.poll() is None:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
                break
            except OSError:
                time.sleep(0.25)
        started = time.perf_counter() - t0
        assert proc.poll() is None, log_path.read_text()[-3000:]
        t1 = time.perf_counter()
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        video, mp4, gif, settings, preview, status = client.predict(
            "a red circle moving right", 0, 2, 3.0, 8, api_name="/generate")
        clip = time.perf_counter() - t1
        assert Path(mp4).stat().st_size > 0                           # the GIF is made on request (/gif)
        print(f"exported app.py served after {started:.1f} s; a 2-step 8-frame clip took {clip:.1f} s")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = log_path.read_text(errors="replace")
    loaded = re.findall(r"(/\S*?/(?:stunet|demo)/(?:__pycache__/)?\w+(?:\.cpython-\d+)?\.pyc?)\b", text)
    ours = [p for p in loaded if p.rsplit("/", 2)[-2] in ("stunet", "demo", "__pycache__")]
    assert any("/stunet/" in p for p in ours) and any("/demo/" in p for p in ours), text[-2000:]
    outside = sorted({p for p in ours if not Path(p).resolve().is_relative_to(out.resolve())})
    assert outside == [], outside[:5]
    print(f"{len(ours)} stunet/demo module files, all in the exported folder, e.g. {ours[0]}")
