"""Text that reaches the page: user text escaped for Markdown, file-name parts from prompts."""
from __future__ import annotations

import html
import re

from stunet.video import slug as _slug


def slug(text: str, n: int = 32) -> str:
    """File-name part from a prompt (stunet.video.slug, shorter: output names also carry seed and time)."""
    return _slug(text, n)


def md_escape(text: str) -> str:
    """User text inside Markdown: Markdown punctuation backslash-escaped, then HTML-escaped."""
    return html.escape(re.sub(r"([\\`*_{}\[\]()#+!|~])", r"\\\1", str(text)))
