"""The rules a Hugging Face Space folder must pass (``stunet space check``), and the parsing they need.

``check(folder)`` lists every broken rule, naming the file and the rule (see ``RULES``):

* a binary file (NUL bytes or not UTF-8, whatever its name) not covered by an LFS pattern in
  ``DIR/.gitattributes``; any file over 10 MiB not covered (the Hub refuses both);
* a single file over 1 GB (``MAX_FILE_BYTES``, not allowed in a Space);
* a folder over 1 GiB in total (``MAX_TOTAL_BYTES``: our own limit, so the Space starts quickly;
  stunet's export is about 7.6 MB);
* README front matter missing or wrong: ``sdk: gradio``, ``sdk_version`` equal to the gradio pin
  of ``DIR/requirements.txt``, ``app_file`` present in the folder, ``python_version`` present;
* a ``requirements.txt`` that is missing or, on CPU hardware, would pull a CUDA build of torch (torch
  unpinned, or pinned without ``+cpu`` and without the PyTorch CPU index);
* on ZeroGPU (``suggested_hardware: zero-a10g``): no ``spaces`` package, a CPU build of torch (``+cpu`` or the
  CPU index), torch unpinned or at a version ZeroGPU does not support, a ``python_version`` it does not support;
* a ``suggested_hardware`` other than those stunet exports for;
* a symlink, or a path that resolves outside the folder.

``.git/`` and ``.cache/huggingface/`` inside the folder are skipped (``upload_folder`` skips them
too). Standard library only, so ``stunet space`` and the command line's help stay cheap. ``stunet.space``
writes folders that pass these rules (``export``) and pushes only those that do (``push``).
"""
from __future__ import annotations

import codecs
import fnmatch
import os
import re
from dataclasses import dataclass
from pathlib import Path

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
MAX_PLAIN_BYTES = 10 * 2**20          # the Hub refuses non-LFS files over 10 MiB
MAX_FILE_BYTES = 10**9                # no single file over 1 GB in a Space
MAX_TOTAL_BYTES = 2**30               # our own limit for the whole folder: 1 GiB
SKIPPED = (".git", ".cache/huggingface")
# --hardware -> the Hub's hardware flavor (front matter ``suggested_hardware``, ``create_repo(space_hardware=)``).
# ZeroGPU's flavor keeps its old name, "zero-a10g" (huggingface_hub's SpaceHardware.ZERO_A10G), whatever GPU backs it.
HARDWARE = {"zero-gpu": "zero-a10g", "cpu-basic": "cpu-basic"}
DEFAULT_HARDWARE = "zero-gpu"        # free personal accounts may create Gradio Spaces on ZeroGPU only (2026)
# ZeroGPU's supported versions, as https://huggingface.co/docs/hub/spaces-zerogpu lists them (August 2026).
ZERO_GPU_TORCH = ("2.8.0", "2.9.1", "2.10.0", "2.11.0")
ZERO_GPU_PYTHON = ("3.10.13", "3.12.12")
SPACES_PIN = "spaces==0.51.3"        # the package that gives a ZeroGPU Space its GPU (@spaces.GPU)
RULES = {
    "binary-not-lfs": "binary files must be covered by an LFS pattern in .gitattributes",
    "large-not-lfs": f"files over {MAX_PLAIN_BYTES // 2**20} MiB must be covered by an LFS pattern",
    "file-too-large": f"no single file over {MAX_FILE_BYTES / 1e9:g} GB",
    "total-too-large": f"the folder must stay under {MAX_TOTAL_BYTES / 2**30:g} GiB in total",
    "front-matter": "README.md front matter: sdk gradio, sdk_version = gradio pin, app_file, python_version, "
                    f"suggested_hardware one of {', '.join(HARDWARE.values())} (or none: CPU basic)",
    "cuda-torch": "a CPU Space's requirements.txt must install the CPU build of torch",
    "cpu-torch": "a ZeroGPU Space's requirements.txt must install a CUDA build of torch (no +cpu, no CPU index)",
    "zero-gpu-torch": f"a ZeroGPU Space pins torch to a version ZeroGPU supports ({', '.join(ZERO_GPU_TORCH)})",
    "zero-gpu-spaces": f"a ZeroGPU Space's requirements.txt installs the spaces package ({SPACES_PIN})",
    "zero-gpu-python": f"a ZeroGPU Space's python_version is one ZeroGPU supports ({', '.join(ZERO_GPU_PYTHON)})",
    "outside-folder": "no symlinks, no paths resolving outside the folder",
}


class SpaceError(ValueError):
    """A Space folder cannot be written or pushed (the message says why)."""


@dataclass(frozen=True)
class Problem:
    """One broken rule: the file (relative to the folder), the rule's key and what is wrong."""
    path: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: [{self.rule}] {self.message}"


# ---------------------------------------------------------------------------- reading project files
def read_requirements(path: Path) -> list[str]:
    """The lines of a requirements file without comments and blanks (options like --extra-index-url kept)."""
    lines = []
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if line:
            lines.append(line)
    return lines


def parse_requirement(line: str) -> tuple[str, str] | None:
    """(normalised name, specifier) of a requirement line, or None for an option line."""
    if line.startswith("-"):
        return None
    m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$", line)
    if not m:
        return None
    return re.sub(r"[-_.]+", "-", m.group(1)).lower(), m.group(3).split(";")[0].strip()


def pinned_version(lines: list[str], name: str) -> str | None:
    """The ``==`` version pinned for ``name`` in requirement lines, or None."""
    for line in lines:
        req = parse_requirement(line)
        if req and req[0] == name:
            m = re.fullmatch(r"===?\s*([^\s,]+)", req[1])
            return m.group(1) if m else None
    return None


def parse_front_matter(text: str) -> dict[str, str] | None:
    """Flat ``key: value`` pairs of a README's YAML front matter (quotes stripped); None if there is none."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    out = {}
    for line in lines[1:]:
        if line.strip() == "---":
            return out
        if not line.strip() or line.lstrip().startswith("#") or ":" not in line:
            continue
        key, value = line.split(":", 1)
        out[key.strip()] = value.split(" #", 1)[0].strip().strip("'\"")
    return None                                        # never closed


def front_matter_block(text: str) -> tuple[str, str]:
    """(front matter lines without the ``---`` fences, the body after it) of a README."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        return "", text
    for i, line in enumerate(lines[1:], 1):
        if line.strip() == "---":
            return "".join(lines[1:i]), "".join(lines[i + 1:])
    return "", text


# ---------------------------------------------------------------------------- hardware and content
def is_cpu_index(line: str) -> bool:
    """Whether a requirements line points pip at the PyTorch CPU index."""
    return line.startswith(("--extra-index-url", "--index-url", "-i")) and CPU_INDEX in line


def is_binary(path: Path, probe: int = 1 << 16) -> bool:
    """True when the file's content is binary: a NUL byte or bytes that are not UTF-8 (first 64 KiB)."""
    with open(path, "rb") as f:
        head = f.read(probe)
        more = bool(f.read(1))
    if b"\0" in head:
        return True
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=not more)
    except UnicodeDecodeError:
        return True
    return False


# ---------------------------------------------------------------------------- the checks
def _skipped(rel: str) -> bool:
    return any(rel == s or rel.startswith(s + "/") for s in SKIPPED)


def list_files(folder: Path) -> list[Path]:
    """Every file under ``folder`` (symlinks included, not followed), ``.git`` and the HF cache skipped."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        prefix = here.relative_to(folder).as_posix()
        prefix = "" if prefix == "." else prefix + "/"
        dirnames[:] = sorted(d for d in dirnames if not _skipped(prefix + d))
        links = [d for d in dirnames if (here / d).is_symlink()]       # listed, never entered
        out += [here / n for n in sorted(filenames + links) if not _skipped(prefix + n)]
    return out


def _glob_regex(pattern: str) -> re.Pattern:
    """A gitattributes path pattern (with a slash) as a regex over the path relative to the folder."""
    p = pattern.lstrip("/")
    out, i = "", 0
    while i < len(p):
        if p.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif p.startswith("/**", i) and i + 3 == len(p):
            out, i = out + "/.*", i + 3
        elif p[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif p[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(p[i]), i + 1
    return re.compile(out + r"\Z")


def lfs_rules(text: str) -> list[tuple[str, bool]]:
    """(pattern, routes to LFS?) for each .gitattributes line that sets or unsets ``filter``, in order."""
    rules = []
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        for attr in parts[1:]:
            if attr.startswith("filter="):
                rules.append((parts[0], attr == "filter=lfs"))
            elif attr in ("-filter", "!filter"):
                rules.append((parts[0], False))
    return rules


def lfs_covered(rel: str, rules: list[tuple[str, bool]]) -> bool:
    """Whether the path (posix, relative to the folder) goes to LFS: the last matching line decides."""
    covered = False
    name = rel.rsplit("/", 1)[-1]
    for pattern, lfs in rules:
        if "/" in pattern.rstrip("/"):
            hit = bool(_glob_regex(pattern).match(rel))
        else:
            hit = fnmatch.fnmatchcase(name, pattern)
        if hit:
            covered = lfs
    return covered


def check_files(folder: Path) -> list[Problem]:
    """Size, binary-without-LFS, symlink and outside-the-folder rules over every file."""
    problems, total = [], 0
    ga = folder / ".gitattributes"
    rules = lfs_rules(ga.read_text(errors="replace")) if ga.is_file() and not ga.is_symlink() else []
    base = folder.resolve()
    for f in list_files(folder):
        rel = f.relative_to(folder).as_posix()
        if f.is_symlink():
            problems.append(Problem(rel, "outside-folder", f"is a symlink (to {os.readlink(f)}); copy the file"))
            continue
        if not f.resolve().is_relative_to(base):
            problems.append(Problem(rel, "outside-folder", f"resolves outside the folder, to {f.resolve()}"))
            continue
        if not f.is_file():
            problems.append(Problem(rel, "outside-folder", "is not a regular file"))
            continue
        size = f.stat().st_size
        total += size
        lfs = lfs_covered(rel, rules)
        if size > MAX_FILE_BYTES:
            problems.append(Problem(rel, "file-too-large", f"{size:,} bytes; {RULES['file-too-large']}"))
        if not lfs and size > MAX_PLAIN_BYTES:
            problems.append(Problem(rel, "large-not-lfs", f"{size:,} bytes and no LFS pattern in .gitattributes "
                                                          "covers it"))
        elif not lfs and is_binary(f):
            problems.append(Problem(rel, "binary-not-lfs", "binary content and no LFS pattern in .gitattributes "
                                                           "covers it"))
    if total > MAX_TOTAL_BYTES:
        problems.append(Problem(".", "total-too-large", f"{total:,} bytes in all; {RULES['total-too-large']}"))
    return problems


def check_front_matter(folder: Path, gradio_version: str | None) -> list[Problem]:
    """README.md front matter: sdk gradio, sdk_version = the gradio pin, app_file present, python_version."""
    readme = folder / "README.md"
    if not readme.is_file():
        return [Problem("README.md", "front-matter", "missing: the Space's configuration lives in its front matter")]
    fm = parse_front_matter(readme.read_text(encoding="utf-8", errors="replace"))
    if fm is None:
        return [Problem("README.md", "front-matter", "no YAML front matter (--- ... --- at the top)")]
    out = []
    if fm.get("sdk") != "gradio":
        out.append(Problem("README.md", "front-matter", f"sdk must be gradio, got {fm.get('sdk')!r}"))
    if not fm.get("sdk_version"):
        out.append(Problem("README.md", "front-matter", "sdk_version missing"))
    elif gradio_version and fm["sdk_version"] != gradio_version:
        out.append(Problem("README.md", "front-matter", f"sdk_version {fm['sdk_version']} differs from the "
                                                         f"gradio pin {gradio_version} in requirements.txt"))
    app = fm.get("app_file")
    if not app:
        out.append(Problem("README.md", "front-matter", "app_file missing"))
    elif not (folder / app).is_file() or not (folder / app).resolve().is_relative_to(folder.resolve()):
        out.append(Problem("README.md", "front-matter", f"app_file {app!r} is not a file in the folder"))
    if not fm.get("python_version"):
        out.append(Problem("README.md", "front-matter", "python_version missing"))
    flavor = fm.get("suggested_hardware")
    if flavor and flavor not in HARDWARE.values():
        out.append(Problem("README.md", "front-matter", f"suggested_hardware {flavor!r}: stunet's Spaces run on "
                                                         f"{' or '.join(HARDWARE.values())}"))
    elif flavor == HARDWARE["zero-gpu"] and fm.get("python_version") and not zero_gpu_python_ok(fm["python_version"]):
        out.append(Problem("README.md", "zero-gpu-python", f"python_version {fm['python_version']}: "
                                                            f"{RULES['zero-gpu-python']}"))
    return out


def zero_gpu_python_ok(version: str) -> bool:
    """Whether a ``python_version`` is one ZeroGPU lists (3.x.y exactly, or its 3.x)."""
    v = str(version).strip()
    return v in ZERO_GPU_PYTHON or v in {p.rsplit(".", 1)[0] for p in ZERO_GPU_PYTHON}


def hardware_of(folder: Path) -> str:
    """The folder's hardware as ``--hardware`` names it, from its README's ``suggested_hardware``: "zero-gpu" for
    ZeroGPU, else "cpu-basic" (the Hub's default hardware, also when the README has none)."""
    readme = Path(folder) / "README.md"
    text = readme.read_text(encoding="utf-8", errors="replace") if readme.is_file() else ""
    fm = parse_front_matter(text) or {}
    return "zero-gpu" if fm.get("suggested_hardware") == HARDWARE["zero-gpu"] else "cpu-basic"


def check_requirements(lines: list[str], hardware: str = "cpu-basic") -> list[Problem]:
    """The requirements rules of ``hardware``: on CPU, a file that would pull a CUDA build of torch (or none at
    all) is a problem; on ZeroGPU see ``check_zero_gpu_requirements``."""
    if hardware == "zero-gpu":
        return check_zero_gpu_requirements(lines)
    cpu_index = any(is_cpu_index(l) for l in lines)
    torch_lines = [l for l in lines if (parse_requirement(l) or ("",))[0] == "torch"]
    if not torch_lines:
        return [Problem("requirements.txt", "cuda-torch", "no torch pin; stunet needs torch==X+cpu")]
    out = []
    for line in torch_lines:
        version = pinned_version([line], "torch")
        if version is None:
            out.append(Problem("requirements.txt", "cuda-torch", f"{line!r}: torch is not pinned with ==, so pip "
                                                                 "takes the default (CUDA) build"))
        elif not cpu_index:
            why = "+cpu versions exist only there" if version.endswith("+cpu") else "pip takes the CUDA build"
            out.append(Problem("requirements.txt", "cuda-torch", f"{line!r} without --extra-index-url {CPU_INDEX}:"
                                                                 f" {why}"))
    return out


def check_zero_gpu_requirements(lines: list[str]) -> list[Problem]:
    """ZeroGPU: ``spaces`` installed; torch pinned (==) to a CUDA build of a version ZeroGPU supports."""
    names = [(parse_requirement(l) or ("",))[0] for l in lines]
    out = []
    if "spaces" not in names:
        out.append(Problem("requirements.txt", "zero-gpu-spaces", f"no spaces package: {RULES['zero-gpu-spaces']}"))
    torch_lines = [l for l, n in zip(lines, names) if n == "torch"]
    if not torch_lines:
        out.append(Problem("requirements.txt", "zero-gpu-torch", f"no torch pin: {RULES['zero-gpu-torch']}"))
    cpu_index = [l for l in lines if is_cpu_index(l)]
    for line in torch_lines:
        version = pinned_version([line], "torch")
        if version is None:
            out.append(Problem("requirements.txt", "zero-gpu-torch", f"{line!r}: torch is not pinned with ==, so pip "
                                                                     "takes the newest, which ZeroGPU may not support"))
        elif version.endswith("+cpu") or cpu_index:
            how = "a +cpu version" if version.endswith("+cpu") else f"the CPU index ({cpu_index[0]!r})"
            out.append(Problem("requirements.txt", "cpu-torch", f"{line!r} with {how}: ZeroGPU needs a CUDA build"))
        elif version.split("+")[0] not in ZERO_GPU_TORCH:
            out.append(Problem("requirements.txt", "zero-gpu-torch", f"{line!r}: {RULES['zero-gpu-torch']}"))
    return out


def check(folder: str | Path, gradio_version: str | None = None) -> list[Problem]:
    """Every broken rule of the Space folder (empty when it can be pushed); see the module docstring.

    ``gradio_version`` defaults to the gradio pin of the folder's requirements.txt.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return [Problem(str(folder), "outside-folder", "not a folder")]
    problems = check_files(folder)
    hardware = hardware_of(folder)
    req = folder / "requirements.txt"
    lines = read_requirements(req) if req.is_file() and not req.is_symlink() else None
    if lines is None:
        rule = "zero-gpu-torch" if hardware == "zero-gpu" else "cuda-torch"
        problems.append(Problem("requirements.txt", rule, "missing: the Space would not install torch"))
    else:
        problems += check_requirements(lines, hardware)
        gradio_version = gradio_version or pinned_version(lines, "gradio")
    return problems + check_front_matter(folder, gradio_version)


def folder_size(folder: Path) -> tuple[int, int]:
    """(number of files, bytes) under the folder, as ``check`` counts them."""
    files = [f for f in list_files(folder) if f.is_file() and not f.is_symlink()]
    return len(files), sum(f.stat().st_size for f in files)
