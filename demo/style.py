"""How the studio looks: the page's CSS (every style the handlers' HTML uses), head tags and theme."""
from __future__ import annotations

CSS = """
#clip video, .pixelated img, .pixelated canvas { image-rendering: pixelated; }
#preview img { width: 100%; height: auto; }
.words { display: flex; flex-wrap: wrap; gap: 2px; align-items: center; min-height: 28px; font-size: 14px; }
.words .hint { color: #6b7280; font-size: 13px; }
.words .hint.warn { color: #b45309; margin-left: 6px; }
.words .chip { display: inline-block; padding: 1px 8px; margin: 2px; border-radius: 999px; border: 1px solid; }
.words .chip.known { background: #dcfce7; border-color: #86efac; color: #14532d; }
.words .chip.unknown { background: #fee2e2; border-color: #fca5a5; color: #7f1d1d; text-decoration: line-through; }
.words .chip.cut { background: #f3f4f6; border-color: #d1d5db; color: #6b7280; text-decoration: line-through; }
.about-figure { margin: 8px 0 4px; }
table.limits td { padding: 2px 12px 2px 0; }
.section-note { color: #4b5563; font-size: 14px; }
"""

HEAD = "<meta name='description' content='Generate clips with a space-time U-Net and see how it handles time.'>"


def theme():
    import gradio as gr
    return gr.themes.Soft(primary_hue="orange", secondary_hue="blue", neutral_hue="slate")
