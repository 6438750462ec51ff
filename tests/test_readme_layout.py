"""The README's layout stays current: every module of ``stunet`` is named in its library table (section "The
library") and every module of ``demo`` in the studio's list (section "The studio"), each with what it is for."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def section(title: str) -> str:
    """The README's ``## title`` section, up to the next ``## `` heading."""
    text = (ROOT / "README.md").read_text()
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, re.S | re.M)
    assert m, f"no '## {title}' section in README.md"
    return m.group(1)


def unnamed(package: str, text: str) -> list[str]:
    """Modules of ``package`` whose file name (`name.py`) is not in ``text`` (package markers aside: every
    ``__init__.py`` but the library's own, which holds its public names)."""
    out = []
    for f in sorted((ROOT / package).rglob("*.py")):
        rel = f.relative_to(ROOT / package)
        if f.name == "__init__.py" and (len(rel.parts) > 1 or package != "stunet"):
            continue
        if f"`{f.name}`" not in text and f"`{rel.as_posix()}`" not in text:
            out.append(rel.as_posix())
    return out


def test_every_library_module_is_in_the_library_table():
    assert unnamed("stunet", section("The library")) == []


def test_every_studio_module_is_in_the_studio_section():
    assert unnamed("demo", section("The studio")) == []


def test_no_module_named_that_is_not_there():
    """A module removed or renamed leaves no row behind (`name.py` cells of the library table)."""
    table = [line for line in section("The library").splitlines() if line.startswith("| `")]
    names = {n for line in table for n in re.findall(r"`([\w/]+\.py)`", line.split("|")[1])}
    files = {f.name for f in (ROOT / "stunet").rglob("*.py")} | \
            {f.relative_to(ROOT / "stunet").as_posix() for f in (ROOT / "stunet").rglob("*.py")}
    assert names - files == set()
