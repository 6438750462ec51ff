"""Hosting the studio on a Hugging Face Space: export a folder, check it, push it.

    stunet space export DIR [--hardware zero-gpu|cpu-basic] [--overwrite]
                                                 write exactly what the Space needs into DIR, then check it
    stunet space check DIR                       the Hub's rules (and ours) on a folder
    stunet space push DIR --repo OWNER/NAME [--private]   check, create the Space, upload the folder

``export`` writes ``app.py``, ``demo/``, ``stunet/`` (no ``__pycache__``), the shipped model's
inference files from ``assets/stunet-shapes/`` (``SHIPPED_MODEL_FILES``; and those of the distilled
``assets/stunet-shapes-fast/``, ``FAST_MODEL_FILES``, of the one-pass ``assets/stunet-shapes-one-pass/``,
``ONE_PASS_MODEL_FILES``, the styles of ``assets/stunet-shapes-styles/`` (``STYLES_FILES``, ``STYLE_FILES``), and
of the keyframe cascade with its
equal-budget STUNet and ``stunet compare`` output, ``assets/stunet-cascade/``, ``CASCADE_MODEL_FILES``, and of the SSR
model, ``assets/stunet-ssr/``, ``SSR_MODEL_FILES``, where they exist: not ``train_state/``, which only resuming needs, nor ``train.log``, the training
history, which stays in the source repository), a ``README.md`` with the Space's front matter
(``sdk_version`` = the gradio pin of ``requirements.txt``, ``suggested_hardware``), a ``requirements.txt`` for
the hardware, and a ``.gitattributes`` whose LFS patterns cover every binary file written.

Hardware (``--hardware``, ``HARDWARE``): ``zero-gpu`` (the default: since 2026 the only Gradio Space a free
personal account may create; the Hub's flavor name is ``zero-a10g``) or ``cpu-basic``. ZeroGPU: ``spaces`` is
installed, torch is PyPI's (CUDA) build of a version ZeroGPU supports (``ZERO_GPU_TORCH``: the project's pin if
listed, else the newest listed) and Python one it supports (``ZERO_GPU_PYTHON``); ``demo.gpu`` decorates the
handlers that run the network. CPU basic: torch is the CPU build (``+cpu`` from the PyTorch CPU index).

``check`` (``stunet.space_rules``, re-exported here) lists the broken rules of a folder, naming the file and the
rule: LFS for binary and large files, sizes, the README's front matter, the hardware's requirements, symlinks.
``.git/`` and ``.cache/huggingface/`` inside the folder are skipped (``upload_folder`` skips them
too). ``push`` runs ``check`` first and uploads nothing when it fails; the token comes from
``HF_TOKEN`` or a stored login, found by ``huggingface_hub`` itself, and is never printed.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from .space_rules import (CPU_INDEX, DEFAULT_HARDWARE, HARDWARE, MAX_FILE_BYTES, MAX_PLAIN_BYTES,
                          MAX_TOTAL_BYTES, RULES, SKIPPED, SPACES_PIN, ZERO_GPU_PYTHON, ZERO_GPU_TORCH, Problem,
                          SpaceError, check, check_files, check_front_matter, check_requirements,
                          check_zero_gpu_requirements, folder_size, front_matter_block, hardware_of, is_binary,
                          is_cpu_index, lfs_covered, lfs_rules, list_files, parse_front_matter, parse_requirement,
                          pinned_version, read_requirements, zero_gpu_python_ok)

__all__ = [  # export and push, and the rules of stunet.space_rules they are checked by, in one namespace
    "export", "push", "check", "check_files", "check_front_matter", "check_requirements", "check_zero_gpu_requirements",
    "check_hardware", "folder_size", "hardware_of", "list_files", "lfs_rules", "lfs_covered", "is_binary",
    "is_cpu_index", "gitattributes_for", "space_readme", "space_requirements", "zero_gpu_requirements",
    "zero_gpu_torch", "zero_gpu_python_ok", "read_requirements", "parse_requirement", "pinned_version",
    "parse_front_matter", "front_matter_block", "Problem", "SpaceError", "RULES", "HARDWARE", "DEFAULT_HARDWARE",
    "ZERO_GPU_TORCH", "ZERO_GPU_PYTHON", "SPACES_PIN", "CPU_INDEX", "MAX_PLAIN_BYTES", "MAX_FILE_BYTES",
    "MAX_TOTAL_BYTES", "SKIPPED", "ROOT", "SHIPPED_MODEL", "SHIPPED_MODEL_FILES", "FAST_MODEL", "FAST_MODEL_FILES",
    "CASCADE_MODEL", "CASCADE_MODEL_FILES", "ONE_PASS_MODEL", "ONE_PASS_MODEL_FILES", "STYLES", "STYLES_FILES",
    "STYLE_FILES", "SSR_MODEL", "SSR_MODEL_FILES", "exported_models", "CODE_DIRS", "LFS_EXTENSIONS", "LFS_ATTRS",
]

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_MODEL = Path("assets") / "stunet-shapes"
SHIPPED_MODEL_FILES = ("config.json", "model.safetensors", "vocab.json", "README.md", "eval.md",
                       "training.png", "eval_curve.jsonl")
# The distilled few-step model (``stunet.distill``), exported beside it when the repository has it.
FAST_MODEL = Path("assets") / "stunet-shapes-fast"
FAST_MODEL_FILES = ("config.json", "model.safetensors", "vocab.json", "sampling.json", "README.md")
# The keyframe cascade of issue 18 (``stunet.cascade``): where it is exported the Space has the Compare tab.
CASCADE_MODEL = Path("assets") / "stunet-cascade"
CASCADE_MODEL_FILES = ("config.json", "README.md", "net/config.json", "net/model.safetensors", "net/sampling.json",
                       "net/vocab.json", "equal-budget-stunet/config.json", "equal-budget-stunet/model.safetensors",
                       "equal-budget-stunet/vocab.json", "rate_error.png", "results.json", "table.md")
# The one-pass (guidance-distilled) model of issue 29 (``stunet.guidance_distill``), where it is shipped.
ONE_PASS_MODEL = Path("assets") / "stunet-shapes-one-pass"
ONE_PASS_MODEL_FILES = ("config.json", "model.safetensors", "vocab.json", "sampling.json", "README.md")
# The styles of issue 33 (``stunet stylize``): the folder's card and, for every style sub-folder (one with a
# ``style.json``), what ``stunet.style_weights.load_style`` reads.
STYLES = Path("assets") / "stunet-shapes-styles"
STYLES_FILES = ("README.md",)
STYLE_FILES = ("config.json", "style.safetensors", "style.json")
# The SSR model of issue 34 (``stunet.ssr``): where it is exported the Space offers Upscale.
SSR_MODEL = Path("assets") / "stunet-ssr"
SSR_MODEL_FILES = ("config.json", "model.safetensors", "README.md")
CODE_DIRS = ("demo", "stunet")
LFS_EXTENSIONS = ("safetensors", "bin", "pt", "pth", "ckpt", "onnx", "npz", "npy", "png", "jpg", "jpeg",
                  "gif", "webp", "bmp", "tif", "tiff", "mp4", "webm", "mov", "avi", "wav", "mp3", "ogg",
                  "zip", "gz", "tar", "zst", "7z", "pdf", "ttf", "woff", "woff2", "pkl", "h5", "parquet")
LFS_ATTRS = "filter=lfs diff=lfs merge=lfs -text"


# ---------------------------------------------------------------------------- what export writes
def check_hardware(hardware: str) -> str:
    """``hardware`` if it is one of ``HARDWARE``'s keys, else a ``SpaceError`` naming them."""
    if hardware not in HARDWARE:
        raise SpaceError(f"--hardware must be one of {', '.join(HARDWARE)}, got {hardware!r}")
    return hardware


def zero_gpu_torch(version: str) -> str:
    """The torch version a ZeroGPU Space gets: the project's (without a local tag) if ZeroGPU supports it, else
    the newest it supports."""
    base = version.split("+")[0]
    return base if base in ZERO_GPU_TORCH else ZERO_GPU_TORCH[-1]


def space_requirements(lines: list[str], hardware: str = "cpu-basic") -> str:
    """The Space's requirements.txt: the project's pins with torch switched to the hardware's build (``HARDWARE``)."""
    if check_hardware(hardware) == "zero-gpu":
        return zero_gpu_requirements(lines)
    out = ["# Written by `stunet space export` from the project's requirements.txt: torch is the CPU build.",
           f"--extra-index-url {CPU_INDEX}"]
    for line in lines:
        if line.startswith(("--extra-index-url", "--index-url", "-i ")) and CPU_INDEX in line:
            continue
        req = parse_requirement(line)
        if req and req[0] == "torch":
            version = pinned_version([line], "torch")
            if version is None:
                raise SpaceError(f"requirements.txt: torch must be pinned with == (got {line!r})")
            line = f"torch=={version.split('+')[0]}+cpu"
        out.append(line)
    return "\n".join(out) + "\n"


def zero_gpu_requirements(lines: list[str]) -> str:
    """A ZeroGPU Space's requirements.txt: ``spaces``, PyPI's CUDA build of a torch ZeroGPU supports, no CPU
    index, every other pin as the project's."""
    out = ["# Written by `stunet space export --hardware zero-gpu` from the project's requirements.txt: torch is",
           "# PyPI's CUDA build, at a version ZeroGPU supports; spaces gives the Space its GPU (@spaces.GPU).",
           SPACES_PIN]
    for line in lines:
        if is_cpu_index(line):
            continue
        req = parse_requirement(line)
        if req and req[0] == "spaces":
            continue
        if req and req[0] == "torch":
            version = pinned_version([line], "torch")
            if version is None:
                raise SpaceError(f"requirements.txt: torch must be pinned with == (got {line!r})")
            line = f"torch=={zero_gpu_torch(version)}"
        out.append(line)
    return "\n".join(out) + "\n"


def space_readme(readme: str, gradio_version: str, hardware: str = "cpu-basic") -> str:
    """The Space's README.md: the project's front matter (sdk_version = gradio pin, the hardware's
    ``suggested_hardware``; on ZeroGPU a ``python_version`` it supports) and its introduction.

    The body is the project README up to its first ``## `` section (title and what it is), then a
    pointer to the model card; the rest of the project README talks about files the Space has not.
    """
    block, body = front_matter_block(readme)
    fm = parse_front_matter(readme) or {}
    wanted = {"sdk": "gradio", "sdk_version": gradio_version, "app_file": "app.py",
              "suggested_hardware": HARDWARE[check_hardware(hardware)]}
    python = fm.get("python_version") or "3.11"
    if hardware == "zero-gpu" and not zero_gpu_python_ok(python):
        python = ZERO_GPU_PYTHON[-1]
    wanted["python_version"] = python
    lines, seen = [], set()
    for line in block.splitlines():
        key = line.split(":", 1)[0].strip() if ":" in line else ""
        if key in wanted:
            value = wanted[key]
            line = f'{key}: "{value}"' if key == "python_version" else f"{key}: {value}"
            seen.add(key)
        lines.append(line)
    for key in wanted:
        if key not in seen:
            lines.append(f'{key}: "{wanted[key]}"' if key == "python_version" else f"{key}: {wanted[key]}")
    if hardware == "zero-gpu":                  # the project's own description says "on a CPU"
        lines = [line for line in lines if not line.startswith("short_description:")]
        lines.append("short_description: Lumiere's Space-Time U-Net on ZeroGPU, with its insides shown")
    elif not any(line.startswith("short_description:") for line in lines):
        lines.append("short_description: Lumiere's Space-Time U-Net on a CPU")
    intro = body.split("\n## ", 1)[0].rstrip()
    tail = ("\n\nThe model card (how it was trained, how good it is) is "
            "[`assets/stunet-shapes/README.md`](assets/stunet-shapes/README.md). This Space was written "
            "by `stunet space export`; the source, tests and training code live in the stunet repository.\n")
    return "---\n" + "\n".join(lines) + "\n---\n\n" + intro.lstrip("\n") + tail


def gitattributes_for(files: list[Path], folder: Path) -> str:
    """A .gitattributes routing the usual binary extensions, and every binary or large file written, to LFS."""
    exts = set(LFS_EXTENSIONS)
    extra = []
    for f in files:
        if f.name == ".gitattributes" or not (is_binary(f) or f.stat().st_size > MAX_PLAIN_BYTES):
            continue
        if f.suffix and f.suffix[1:]:
            exts.add(f.suffix[1:].lower())
        else:
            extra.append("/" + f.relative_to(folder).as_posix())
    lines = [f"*.{e} {LFS_ATTRS}" for e in sorted(exts)]
    lines += [f"*.{e.upper()} {LFS_ATTRS}" for e in sorted(exts)]
    lines += [f"{p} {LFS_ATTRS}" for p in sorted(extra)]
    return "# Written by `stunet space export`: binary files go through LFS/Xet.\n" + "\n".join(lines) + "\n"


def _ignore_caches(_dir, names):
    return [n for n in names if n == "__pycache__" or n.endswith((".pyc", ".pyo"))]


def _prepare(dest: Path, overwrite: bool, root: Path) -> None:
    """Make ``dest`` an empty folder (keeping ``.git``), refusing to clobber anything without ``overwrite``."""
    d = dest.resolve()
    src = root.resolve()
    if d == src or src.is_relative_to(d) or any(d.is_relative_to(src / p) for p in (*CODE_DIRS, "assets")):
        raise SpaceError(f"{dest}: would overwrite the project's own files; export to a new folder")
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise SpaceError(f"{dest}: exists and is not a folder")
    if dest.is_dir():
        entries = [p for p in dest.iterdir() if p.name != ".git"]
        if entries and not overwrite:
            raise SpaceError(f"{dest}: folder is not empty ({len(entries)} entries); pass --overwrite to "
                             "replace its contents (a .git folder is kept)")
        for p in entries:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
    dest.mkdir(parents=True, exist_ok=True)


def exported_models(root: Path = ROOT) -> dict[Path, tuple[str, ...]]:
    """{folder under ``root``: the file names export copies from it}: the shipped model always; the fast, one-pass,
    cascade and SSR models and the styles where the repository has them (a style is a sub-folder of ``STYLES`` with a
    ``style.json``; its training state and log stay behind)."""
    models = {SHIPPED_MODEL: SHIPPED_MODEL_FILES}
    for optional, names in ((FAST_MODEL, FAST_MODEL_FILES), (ONE_PASS_MODEL, ONE_PASS_MODEL_FILES),
                            (CASCADE_MODEL, CASCADE_MODEL_FILES), (SSR_MODEL, SSR_MODEL_FILES)):
        if (root / optional).is_dir():
            models[optional] = names
    styles = sorted(d for d in (root / STYLES).glob("*/") if (d / "style.json").is_file())
    if styles:
        models[STYLES] = STYLES_FILES
        models.update({STYLES / d.name: STYLE_FILES for d in styles})
    return models


def export(dest: str | Path, overwrite: bool = False, root: Path = ROOT,
           hardware: str = DEFAULT_HARDWARE) -> list[Path]:
    """Write exactly what the Space needs on ``hardware`` (``HARDWARE``) into ``dest``; returns the files written
    (see the module docstring).

    Refuses a non-empty ``dest`` unless ``overwrite`` (then its contents, except ``.git``, are replaced).
    """
    dest = Path(dest)
    check_hardware(hardware)
    req_lines = read_requirements(root / "requirements.txt")
    gradio_version = pinned_version(req_lines, "gradio")
    if gradio_version is None:
        raise SpaceError("requirements.txt: no gradio==X pin to take the Space's sdk_version from")
    models = exported_models(root)
    missing = [str(d / f) for d, names in models.items() for f in names if not (root / d / f).is_file()]
    missing += [p for p in ("app.py", *CODE_DIRS) if not (root / p).exists()]
    if missing:
        raise SpaceError(f"missing in {root}: {', '.join(missing)}")
    requirements = space_requirements(req_lines, hardware)
    readme = space_readme((root / "README.md").read_text(encoding="utf-8"), gradio_version, hardware)
    _prepare(dest, overwrite, root)
    shutil.copy2(root / "app.py", dest / "app.py")
    for name in CODE_DIRS:
        shutil.copytree(root / name, dest / name, ignore=_ignore_caches)
    for d, names in models.items():
        for f in names:
            (dest / d / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / d / f, dest / d / f)
    (dest / "README.md").write_text(readme, encoding="utf-8")
    (dest / "requirements.txt").write_text(requirements)
    files = list_files(dest)
    (dest / ".gitattributes").write_text(gitattributes_for(files, dest))
    return list_files(dest)


# ---------------------------------------------------------------------------- push
def push(folder: str | Path, repo_id: str, private: bool = False, api=None) -> str:
    """Check the folder, create the Space if needed and upload the folder; returns the Space's URL.

    ``api`` is an ``huggingface_hub.HfApi`` (made here when None); it finds the token itself
    (``HF_TOKEN`` or a stored login). Nothing is uploaded when ``check`` finds a problem.
    """
    folder = Path(folder)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*", repo_id or ""):
        raise SpaceError(f"--repo must be OWNER/NAME, got {repo_id!r}")
    problems = check(folder)
    if problems:
        raise SpaceError(f"{folder} fails the Space checks, nothing pushed:\n" + "\n".join(map(str, problems)))
    if api is None:
        from huggingface_hub import HfApi
        api = HfApi()
    # a new Space starts on the folder's hardware (an existing one keeps its own: Settings on the Hub changes it)
    api.create_repo(repo_id, repo_type="space", space_sdk="gradio", exist_ok=True, private=private,
                    space_hardware=HARDWARE[hardware_of(folder)])
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="space",
                      commit_message="Upload from stunet space push")
    return f"https://huggingface.co/spaces/{repo_id}"
