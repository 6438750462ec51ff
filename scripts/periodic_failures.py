"""How the periodic clips of a ``stunet eval`` run fail (issue 35, diagnosis): from its ``--json``, no sampling.

For every periodic prompt (bouncing, spinning, orbiting) and speed, the clips of the run are counted by the
motion detector's verdict (``stunet.shapes.metrics``): right; read as another motion (the path fits another
motion's model better, e.g. a bounce whose path is a closed curve is read as orbiting); the wrong sense; or
the right motion at the wrong rate, too slow (period over the tolerance) or too fast. The measured period
of the right-motion, wrong-rate clips is given against the prompt's.

    python scripts/periodic_failures.py runs/eval29/full-14.json [--markdown OUT.md]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stunet.shapes import world  # noqa: E402

PERIODIC = ("bouncing", "spinning", "orbiting")
KINDS = ("right", "read as another motion", "wrong sense", "too slow", "too fast")


def failure(clip: dict, prompted: str) -> str:
    """One clip's verdict from its ``stunet eval`` record (``metrics.ClipScore`` as JSON)."""
    if clip["motion_ok"]:
        return "right"
    if clip["motion"] != prompted:
        return "read as another motion"
    if not clip["direction_ok"]:
        return "wrong sense"
    return "too slow" if clip["measured"] > clip["expected"] else "too fast"


def tally(clips: list[dict]) -> dict:
    """{(motion, speed): {"counts": Counter of KINDS, "read_as": Counter, "periods": [(measured, expected)]}}."""
    out = defaultdict(lambda: {"counts": Counter(), "read_as": Counter(), "periods": []})
    for c in clips:
        spec = world.parse_caption(c["prompt"])
        if spec.motion not in PERIODIC:
            continue
        row = out[(spec.motion, spec.speed or "normal")]
        kind = failure(c, spec.motion)
        row["counts"][kind] += 1
        if kind == "read as another motion":
            row["read_as"][c["motion"]] += 1
        elif kind in ("too slow", "too fast"):
            row["periods"].append((c["measured"], c["expected"]))
    return dict(out)


def markdown(rows: dict, source: str) -> str:
    lines = [f"How the periodic clips of `{source}` fail (the motion detector's verdicts, clip by clip):", "",
             "| motion | speed | clips | " + " | ".join(KINDS) + " | read as | measured / prompted period (wrong rate) |",
             "|---|---|---:|" + "---:|" * len(KINDS) + "---|---|"]
    order = {m: i for i, m in enumerate(PERIODIC)}
    speeds = {"slowly": 0, "normal": 1, "quickly": 2}
    for (motion, speed), r in sorted(rows.items(), key=lambda kv: (order[kv[0][0]], speeds[kv[0][1]])):
        n = sum(r["counts"].values())
        read = ", ".join(f"{m} {k}" for m, k in r["read_as"].most_common()) or "-"
        ratios = [m / e for m, e in r["periods"]]
        per = (f"median x{statistics.median(ratios):.2f} (x{min(ratios):.2f} to x{max(ratios):.2f})"
               if ratios else "-")
        lines.append(f"| {motion} | {speed} | {n} | " + " | ".join(str(r["counts"][k]) for k in KINDS)
                     + f" | {read} | {per} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("eval_json", help="a `stunet eval --json` file")
    p.add_argument("--who", default="model", choices=("model", "ceiling"), help="the model's clips or the world's")
    p.add_argument("--markdown", help="also write the table here")
    a = p.parse_args(argv)
    data = json.loads(Path(a.eval_json).read_text())
    text = markdown(tally(data["clips"][a.who]), a.eval_json)
    print(text, end="")
    if a.markdown:
        Path(a.markdown).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
