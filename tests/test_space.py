"""``stunet space``: export a Hugging Face Space folder, check it against the Hub's rules, push it."""
from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
import time
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
def test_export_writes_exactly_the_space(tmp_path, capsys):
    out = tmp_path / "sp"
    assert main(["space", "export", str(out)]) == 0
    assert "ready for a Space" in capsys.readouterr().out
    files = {f.relative_to(out).as_posix() for f in space.list_files(out)}
    model = {f"assets/stunet-shapes/{n}" for n in space.SHIPPED_MODEL_FILES}
    for d, names in ((space.FAST_MODEL, space.FAST_MODEL_FILES), (space.CASCADE_MODEL, space.CASCADE_MODEL_FILES)):
        if (ROOT / d).is_dir():
            model |= {f"{d.as_posix()}/{n}" for n in names}
    code = {p.relative_to(ROOT).as_posix() for d in ("stunet", "demo") for p in (ROOT / d).rglob("*.py")
            if "__pycache__" not in p.parts}
    assert "stunet/shapes/world.py" in code                     # subpackages go too
    assert files == {"app.py", "README.md", "requirements.txt", ".gitattributes"} | model | code
    assert not any("__pycache__" in f or "train_state" in f or f.endswith(".log") for f in files)
    assert (out / "assets/stunet-shapes/model.safetensors").read_bytes() == \
        (ROOT / "assets/stunet-shapes/model.safetensors").read_bytes()
    fm = space.parse_front_matter((out / "README.md").read_text())
    assert fm["sdk"] == "gradio" and fm["sdk_version"] == GRADIO_PIN and fm["app_file"] == "app.py"
    assert fm["python_version"] and fm["suggested_hardware"] == "cpu-basic" and fm["short_description"]
    req = space.read_requirements(out / "requirements.txt")
    assert f"--extra-index-url {space.CPU_INDEX}" in req
    torch_pin = space.pinned_version(space.read_requirements(ROOT / "requirements.txt"), "torch")
    assert f"torch=={torch_pin.split('+')[0]}+cpu" in req
    other = [l for l in space.read_requirements(ROOT / "requirements.txt") if not l.startswith("torch")]
    assert all(l in req for l in other)                       # every other pin copied as it is
    r = space.lfs_rules((out / ".gitattributes").read_text())
    for ext in ("safetensors", "png", "gif", "mp4", "npz", "jpg", "webp"):
        assert space.lfs_covered(f"x/y.{ext}", r)
    assert space.check(out) == []


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
    assert "torch==2.1.0+cpu" in space.space_requirements(["torch==2.1.0+cu121"])


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
    assert (c1, repo, kw1["repo_type"], kw1["space_sdk"], kw1["exist_ok"], kw1["private"]) == \
        ("create_repo", "me/stunet", "space", "gradio", True, True)
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


# ---------------------------------------------------------------------------- the exported folder runs
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
        assert Path(mp4).stat().st_size > 0 and Path(gif).stat().st_size > 0
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
