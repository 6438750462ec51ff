"""Command line: ``stunet SUBCOMMAND`` (same as ``python -m stunet SUBCOMMAND``).

    stunet info --preset shapes [--json]        the space-time pyramid
    stunet info --model DIR [--json]
    stunet generate "a red circle moving left" --seed 0 --out clip.mp4
    stunet generate --prompts prompts.txt --out-dir clips/ --format gif
    stunet generate "a red circle" --video in.gif --mask mask.png --out out.mp4     inpainting
    stunet generate "a red square spinning" --image still.png --region r.png       cinemagraph
    stunet generate "a blue circle moving left" --video in.mp4 --strength 0.6      video-to-video
    stunet train --preset shapes --out runs/shapes      (see stunet.train)
    stunet train-cascade --init RUN/image_unet --out runs/cascade   the cascade baseline (see stunet.cascade)
    stunet train-ssr --out runs/ssr                     spatial super-resolution, 32 -> 128 (see stunet.ssr)
    stunet distill --out runs/fast --steps 8            few-step student (see stunet.distill)
    stunet eval [--model DIR]                           (see stunet.shapes.evaluate)
    stunet generate "a red square spinning" --ablate tattn:all=uniform   an intervention (stunet info --parts)
    stunet ablate --out DIR                             each temporal part switched off (see stunet.ablate)
    stunet stylize --style outline --out DIR            fine-tune the spatial weights on a style (see stunet.stylize)
    stunet generate "a red square spinning" --style DIR --style-strength 0.5   styled spatial weights, same motion
    stunet generate "a red circle moving right" --upscale --out x.npy   128x128 through the SSR stage (stunet.ssr)
    stunet compare --stunet DIR --cascade DIR --out DIR  STUNet vs keyframe cascade (stunet.shapes.compare)
    stunet average RUN_A RUN_B --out DIR [--weights 1,1]   checkpoint averaging
    stunet bench                                        (a source checkout's benchmarks/)
    stunet space export|check|push DIR                  Hugging Face Space (see stunet.space; --hardware)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .defaults import GUIDANCE, PRECISIONS, SAMPLER, SAMPLERS, STEPS, parse_elsewhere, parse_interval


def _pyramid_dict(cfg, frames=None) -> dict:
    from .checkpoint import estimate_parameters
    from .model import describe_pyramid
    levels = [{"name": lv.name.split(" ")[0], "channels": lv.channels, "frames": lv.frames, "height": lv.height,
               "width": lv.width, "temporal_attention": lv.temporal_attention > 0,
               "temporal_attention_layers": lv.temporal_attention, "temporal_conv": lv.temporal_conv,
               "cross_attention": lv.cross_attention} for lv in describe_pyramid(cfg, frames)]
    return {"levels": levels, "parameters": estimate_parameters(cfg)}


def cmd_info(args) -> int:
    from .checkpoint import read_config
    from .config import preset
    cfg = read_config(args.model) if args.model else preset(args.preset)
    if args.parts:                                      # the names `generate --ablate` takes (stunet.interventions)
        from .interventions import list_parts
        print("\n".join(f"{name:<34}{what}" for name, what in list_parts(cfg)))
        return 0
    info = _pyramid_dict(cfg, args.frames)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{'level':<8}{'channels':>9}{'frames':>8}{'height':>8}{'width':>7}  temporal layers")
    for lv in info["levels"]:
        parts = (["1D conv"] if lv["temporal_conv"] else []) + \
                ([f"attention x{lv['temporal_attention_layers']}"] if lv["temporal_attention"] else [])
        print(f"{lv['name']:<8}{lv['channels']:>9}{lv['frames']:>8}{lv['height']:>8}{lv['width']:>7}  "
              f"{', '.join(parts) or '-'}{'  + text cross-attention' if lv['cross_attention'] else ''}")
    print(f"parameters: {info['parameters']:,}")
    return 0


def load_mask_file(path: str, size: tuple[int, int]):
    """A mask from .npy (bool or 0/1, (h w) or (t h w)) or an image (white / opaque = True), resized to
    ``size`` with nearest neighbour (``video_decode.read_mask``)."""
    import numpy as np
    from .editing import resize_mask
    from .video_decode import read_mask
    if Path(path).suffix.lower() != ".npy":
        return read_mask(path, size)
    m = np.load(path, allow_pickle=False)
    if m.dtype != bool:
        if m.dtype.kind not in "iu" or not np.isin(m, (0, 1)).all():
            raise ValueError("a .npy mask must be boolean or 0/1")
        m = m.astype(bool)
    if m.ndim not in (2, 3):
        raise ValueError(f"a .npy mask must be (h, w) or (t, h, w), got {m.shape}")
    return resize_mask(m, size)


def cmd_edit(args) -> int:
    """``generate --video/--image --mask/--region/--strength``: the editing applications (stunet.editing)."""
    from . import editing
    from .pipeline import Pipeline
    from .video import read_image, write_video
    from .video_decode import decode_video
    if args.prompts or not args.prompt:
        print("error: an edit takes one PROMPT (not --prompts)", file=sys.stderr)
        return 2
    if args.region and not args.image:
        print("error: --region needs --image (cinemagraph)", file=sys.stderr)
        return 2
    if args.mask and not args.video:
        print("error: --mask needs --video (inpainting); a cinemagraph takes --image and --region", file=sys.stderr)
        return 2
    if args.strength is not None and not args.video:
        print("error: --strength needs --video (video-to-video)", file=sys.stderr)
        return 2
    if args.upscale:
        print("error: --upscale works on generated clips; edits (--video, --region, --mask) stay at the model's size",
              file=sys.stderr)
        return 2
    if args.video and args.image:
        print("error: give --video (inpainting, video-to-video) or --image (cinemagraph), not both", file=sys.stderr)
        return 2
    if args.video and (args.mask is None) == (args.strength is None):
        print("error: --video needs --mask (inpainting) or --strength (video-to-video), one of them", file=sys.stderr)
        return 2
    if args.strength is not None:
        editing.check_strength(args.strength)
    out = Path(args.out)
    fmt = args.format or out.suffix.lstrip(".").lower()
    if fmt not in ("mp4", "gif", "npy"):
        print("error: --out must end in .mp4, .gif or .npy (or pass --format)", file=sys.stderr)
        return 2
    from .cascade import is_cascade
    if is_cascade(args.model):
        print("error: the cascade baseline does not edit (inpainting, cinemagraph, video-to-video); "
              "use a STUNet checkpoint", file=sys.stderr)
        return 2
    pipe = Pipeline.from_pretrained(args.model, precision=args.precision)
    from .stylize import cli_pipeline                   # --style: spatial weights interpolated (stunet.stylize)
    pipe = cli_pipeline(pipe, args.style, args.style_strength)
    print(f"precision: {pipe.precision.name} ({pipe.precision.reason})", file=sys.stderr)
    cfg = pipe.config
    size = (cfg.height, cfg.width)
    kw = dict(seed=args.seed, steps=args.steps, guidance=args.guidance, sampler=args.sampler, stride=args.stride)
    if args.image:
        image = read_image(args.image, size)
        req = editing.prepare_cinemagraph(pipe, image, load_mask_file(args.region, size), args.prompt,
                                          frames=args.frames, **kw)
    else:
        video = editing.fit_frames(decode_video(args.video, size, allow_npy=True), cfg)
        if args.mask is not None:
            mask = load_mask_file(args.mask, size)
            if mask.ndim == 3:
                mask = mask[: len(video)]
            req = editing.prepare_inpaint(pipe, video, mask, args.prompt, **kw)
        else:
            req = editing.prepare_video_to_video(pipe, video, args.prompt, args.strength, **kw)
    e = req.run(pipe)
    write_video(out, e.video, fmt=fmt, scale=args.scale)
    rec = e.record()
    print(f"{e.mode}: {len(e.video)} frames, {rec['steps_run']} steps"
          + (f", PSNR of the given pixels before the paste {rec['psnr_given_before_paste_db']} dB"
             if e.given is not None else f", strength {args.strength:g}"), file=sys.stderr)
    print(out)
    return 0


def cmd_generate(args) -> int:
    from .cascade import load_pipeline
    from .pipeline import Settings
    from .text import PromptError
    from .video import FORMATS, read_image, slug, write_video
    if args.video or args.region or args.mask or args.strength is not None:
        return cmd_edit(args)
    if bool(args.prompt) == bool(args.prompts):
        print("error: give a PROMPT or --prompts FILE (not both)", file=sys.stderr)
        return 2
    if args.prompts:
        prompts = [l.strip() for l in Path(args.prompts).read_text().splitlines() if l.strip()]
        if not prompts:
            print(f"error: no prompts in {args.prompts}", file=sys.stderr)
            return 2
        if not args.out_dir:
            print("error: --prompts needs --out-dir", file=sys.stderr)
            return 2
    else:
        prompts = [args.prompt]
    try:
        args.guidance_interval = parse_interval(args.guidance_interval)
    except ValueError as e:
        print(f"error: --guidance-interval: {e}", file=sys.stderr)
        return 2
    if args.guidance_elsewhere is not None:
        try:
            parse_elsewhere(args.guidance_elsewhere, args.guidance_interval)
        except ValueError as e:
            print(f"error: --guidance-elsewhere: {e}", file=sys.stderr)
            return 2
    ssr = None
    if args.upscale:
        from .ssr.checkpoint import load_ssr
        ssr = load_ssr(args.ssr)                        # refused before any sampling: no model, a bad file
    elif args.ssr or args.ssr_windows != "multidiffusion" or args.ssr_steps is not None:
        print("error: --ssr, --ssr-windows and --ssr-steps go with --upscale", file=sys.stderr)
        return 2
    if args.ssr_steps is None:
        from .ssr.sampling import SSR_STEPS
        args.ssr_steps = SSR_STEPS
    pipe = load_pipeline(args.model, precision=args.precision)         # a STUNet or a cascade (stunet.cascade)
    from .stylize import cli_pipeline                   # --style: spatial weights interpolated (stunet.stylize)
    pipe = cli_pipeline(pipe, args.style, args.style_strength)
    print(f"precision: {pipe.precision.name} ({pipe.precision.reason})", file=sys.stderr)
    vocab = ", ".join(pipe.tokenizer.words)
    net = getattr(pipe, "net_config", pipe.config)
    if ssr is not None and (ssr.config.base_size, ssr.config.base_size) != (net.height, net.width):
        print(f"error: the SSR model upscales {ssr.config.base_size}x{ssr.config.base_size} clips; this model makes "
              f"{net.height}x{net.width}", file=sys.stderr)
        return 2
    first = read_image(args.image, (net.height, net.width)) if args.image else None
    from .ablate import cli_parts                       # --ablate: checked for every prompt before any sampling
    parts = cli_parts(pipe, args.ablate, [Settings(p, seed=args.seed, steps=args.steps, guidance=args.guidance,
                      guidance_interval=args.guidance_interval, guidance_elsewhere=args.guidance_elsewhere,
                      frames=args.frames or pipe.config.frames, sampler=args.sampler, stride=args.stride)
                      for p in prompts])
    status = 0
    for i, prompt in enumerate(prompts):
        try:
            enc = pipe.tokenizer.check(prompt)              # refused: no word of content (stunet.text)
        except PromptError as e:
            print(f"error: {prompt!r}: {e}", file=sys.stderr)
            status = 1
            continue
        if enc.unknown:
            print(f"warning: unknown words {enc.unknown} in {prompt!r} are ignored; the model knows: {vocab}",
                  file=sys.stderr)
        s = Settings(prompt, seed=args.seed, steps=args.steps, guidance=args.guidance,
                     guidance_interval=args.guidance_interval, guidance_elsewhere=args.guidance_elsewhere,
                     frames=args.frames or pipe.config.frames, sampler=args.sampler, stride=args.stride)
        if parts:
            from .interventions import run as run_intervened
            gen = run_intervened(pipe, s, parts, first_frame=first)
        else:
            gen = pipe(s, first_frame=first)
        if args.prompts:
            fmt = args.format or "mp4"
            out = Path(args.out_dir) / f"{i:03d}-{slug(prompt)}.{fmt}"
        else:
            out = Path(args.out)
            fmt = args.format or out.suffix.lstrip(".").lower()
            if fmt not in FORMATS:
                print("error: --out must end in .mp4, .gif or .npy (or pass --format)", file=sys.stderr)
                return 2
        video = gen.video
        if ssr is not None:                             # --upscale: Lumiere's SSR stage (stunet.ssr)
            from .ssr.sampling import upscale_clip
            video = upscale_clip(ssr, video, seed=args.seed, steps=args.ssr_steps, windows=args.ssr_windows,
                                 precision=pipe.precision)
        write_video(out, video, fmt=fmt, scale=max(1, args.scale // ssr.config.scale) if ssr else args.scale)
        print(out)
    return status


def cmd_average(args) -> int:
    from .checkpoint import WEIGHTS_NAME, average_checkpoints, save_pretrained
    out = Path(args.out)
    if any(out.resolve() == Path(d).resolve() for d in args.checkpoints):
        print("error: --out must be a new directory, not one of the checkpoints averaged", file=sys.stderr)
        return 2
    if (out / WEIGHTS_NAME).exists() and not args.overwrite:
        print(f"error: {out / WEIGHTS_NAME} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    weights = None
    if args.weights:
        try:
            weights = [float(x) for x in args.weights.split(",")]
        except ValueError:
            print(f"error: --weights must be numbers separated by commas, got {args.weights!r}", file=sys.stderr)
            return 2
    model, tok, meta = average_checkpoints(args.checkpoints, weights)
    save_pretrained(model, tok, out, extra=meta)
    print(out)
    return 0


def cmd_bench(argv: list[str]) -> int:
    """``stunet bench``: runs the source checkout's ``benchmarks/`` (``python -m benchmarks.run``).

    The benchmarks are not part of the installed package: they compare against baselines and write
    reports where the user says (``--out``, ``--json``); an installed stunet without its checkout
    says so instead.
    """
    root = Path(__file__).resolve().parent.parent
    if not (root / "benchmarks" / "run.py").is_file():
        print("error: the benchmarks need a source checkout of stunet (they live in its benchmarks/ folder, "
              "not in the installed package); clone the repository and run `python -m benchmarks.run --help` "
              "from its root", file=sys.stderr)
        return 2
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from benchmarks.run import main as bench_main
    return bench_main(argv, prog="stunet bench") or 0


def cmd_space(args) -> int:
    from . import space
    if args.action == "export":
        space.export(args.dir, overwrite=args.overwrite, hardware=args.hardware)
    elif args.action == "push":
        print(space.push(args.dir, args.repo, private=args.private))
        return 0
    problems = space.check(args.dir)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 1
    n, size = space.folder_size(Path(args.dir))
    print(f"{args.dir}: ready for a Space ({n} files, {size / 1e6:.1f} MB)")
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        from .train import main as train_main
        train_main(argv[1:])
        return 0
    if argv and argv[0] == "train-cascade":
        from .cascade.train import main as cascade_main
        cascade_main(argv[1:])
        return 0
    if argv and argv[0] == "train-ssr":
        from .ssr.train import main as ssr_main
        return ssr_main(argv[1:]) or 0
    if argv and argv[0] == "distill":
        from .distill import main as distill_main
        return distill_main(argv[1:]) or 0
    if argv and argv[0] == "distill-guidance":
        from .guidance_distill import main as guidance_main
        return guidance_main(argv[1:]) or 0
    if argv and argv[0] == "ablate":
        from .ablate import main as ablate_main
        return ablate_main(argv[1:]) or 0
    if argv and argv[0] == "stylize":
        from .stylize import main as stylize_main
        return stylize_main(argv[1:]) or 0
    if argv and argv[0] == "eval":
        from .shapes.evaluate import main as eval_main
        return eval_main(argv[1:]) or 0
    if argv and argv[0] == "compare":
        from .shapes.compare import main as compare_main
        return compare_main(argv[1:]) or 0
    if argv and argv[0] == "bench":
        return cmd_bench(argv[1:])

    p = argparse.ArgumentParser(prog="stunet", description="Lumiere's Space-Time U-Net on a CPU.")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("train", help="train a model (stunet train --help)")
    sub.add_parser("train-cascade", help="train the keyframes + TSR cascade baseline (stunet train-cascade --help)")
    sub.add_parser("train-ssr", help="train the spatial super-resolution model (stunet train-ssr --help)")
    sub.add_parser("distill", help="distil a few-step model from a checkpoint (stunet distill --help)")
    sub.add_parser("distill-guidance", help="fold classifier-free guidance into the network: one row a step "
                   "(stunet distill-guidance --help)")
    sub.add_parser("eval", help="evaluate a model with analytic detectors (stunet eval --help)")
    sub.add_parser("ablate", help="switch each temporal part off, paired against the unablated run (stunet ablate --help)")
    sub.add_parser("stylize", help="fine-tune the spatial weights on a world style (stunet stylize --help)")
    sub.add_parser("compare", help="STUNet vs a keyframe cascade on periodic motion (stunet compare --help)")
    sub.add_parser("bench", help="time the STUNet against baselines (source checkout; stunet bench --help)")
    i = sub.add_parser("info", help="print the space-time pyramid")
    i.add_argument("--preset", default="shapes")
    i.add_argument("--model", help="checkpoint directory (overrides --preset)")
    i.add_argument("--frames", type=int, help="clip length (default: the training window)")
    i.add_argument("--json", action="store_true")
    i.add_argument("--parts", action="store_true", help="list the parts `generate --ablate` takes")
    g = sub.add_parser("generate", help="make clips from text")
    g.add_argument("prompt", nargs="?")
    g.add_argument("--prompts", help="file with one prompt per line")
    g.add_argument("--out", default="clip.mp4", help="output file (.mp4, .gif or .npy)")
    g.add_argument("--out-dir", help="output folder with --prompts")
    g.add_argument("--format", choices=("mp4", "gif", "npy"))
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--steps", type=int, default=None,
                   help=f"denoising steps (default: the model's own: {STEPS} for the full model, N for a distilled one)")
    g.add_argument("--guidance", type=float, default=None, help=f"guidance scale (default: the model's own, {GUIDANCE:g})")
    g.add_argument("--guidance-interval", metavar="LO,HI", default=None,
                   help="guide only at diffusion timesteps LO..HI; other steps cost one row (default: the model's own; "
                        "'all': every step)")
    g.add_argument("--guidance-elsewhere", type=float, metavar="W", help="guidance scale outside "
                   "--guidance-interval (default: the model's own with its own interval, else 1: unguided)")
    g.add_argument("--frames", type=int, help="default: the model's window; longer uses MultiDiffusion")
    g.add_argument("--sampler", default=None, choices=SAMPLERS,
                   help=f"solver (default: the model's own: {SAMPLER} for the full model, ddim for a distilled one)")
    g.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="compute precision (default: $STUNET_PRECISION, else auto: bf16 only where measured faster)")
    g.add_argument("--stride", type=int, default=1, help="frame stride (frame-rate conditioning)")
    g.add_argument("--image", help="first frame (PNG/JPEG): image-to-video; with --region: a cinemagraph")
    g.add_argument("--video", help="input clip (.npy, .gif, .mp4): with --mask inpainting, with --strength "
                                   "video-to-video (SDEdit)")
    g.add_argument("--mask", help="inpainting mask (.npy, or PNG: white = regenerate), resized to the model's size "
                                  "with nearest neighbour")
    g.add_argument("--region", help="cinemagraph region (.npy, or PNG: white = may move), with --image")
    g.add_argument("--strength", type=float, help="video-to-video: how much of the schedule to redo, in (0, 1]")
    g.add_argument("--model", help="checkpoint directory, a STUNet or a cascade (default: the shipped model)")
    g.add_argument("--scale", type=int, default=8, help="nearest-neighbour upscaling of mp4/gif")
    g.add_argument("--ablate", action="append", metavar="PART", help="switch a part off or patch it (repeatable; "
                   "names: stunet info --parts), same seed and noise (stunet.interventions)")
    g.add_argument("--style", metavar="DIR", help="a style directory (stunet stylize): its spatial weights "
                   "interpolated with the model's, temporal weights kept")
    g.add_argument("--style-strength", type=float, default=None, metavar="A",
                   help="spatial weights (1 - A) original + A styled, A in [0, 1] (default 1; 0: the model itself)")
    g.add_argument("--upscale", action="store_true",
                   help="lift the clip to 128x128 with the SSR model (stunet.ssr; Lumiere's SSR stage)")
    g.add_argument("--ssr", metavar="DIR", help="SSR model directory (default: $STUNET_SSR, else assets/stunet-ssr)")
    g.add_argument("--ssr-windows", choices=("multidiffusion", "independent"), default="multidiffusion",
                   help="temporal windows reconciled by MultiDiffusion (default) or independent (the comparison)")
    g.add_argument("--ssr-steps", type=int, default=None, help="SSR denoising steps (default 4)")
    a = sub.add_parser("average", help="average the weights of checkpoints of one run (checkpoint averaging)")
    a.add_argument("checkpoints", nargs="+", help="checkpoint directories (same config and vocabulary)")
    a.add_argument("--out", required=True, help="new checkpoint directory")
    a.add_argument("--weights", help="one weight per checkpoint, comma-separated (default: equal)")
    a.add_argument("--overwrite", action="store_true", help="replace the weights already in --out")
    sp = sub.add_parser("space", help="export, check or push a Hugging Face Space folder")
    sp_sub = sp.add_subparsers(dest="action", required=True)
    se = sp_sub.add_parser("export", help="write what the Space needs into DIR, then check it")
    se.add_argument("dir")
    se.add_argument("--overwrite", action="store_true", help="replace DIR's contents (its .git is kept)")
    from .space import DEFAULT_HARDWARE, HARDWARE           # standard library only: cheap
    se.add_argument("--hardware", choices=tuple(HARDWARE), default=DEFAULT_HARDWARE,
                    help="the Space's hardware: zero-gpu (default: the only one free accounts may host) or cpu-basic")
    sp_sub.add_parser("check", help="check DIR against the Hub's rules").add_argument("dir")
    su = sp_sub.add_parser("push", help="check DIR, create the Space and upload DIR (token: HF_TOKEN or login)")
    su.add_argument("dir")
    su.add_argument("--repo", required=True, help="the Space, OWNER/NAME")
    su.add_argument("--private", action="store_true")
    args = p.parse_args(argv)
    try:
        return {"info": cmd_info, "generate": cmd_generate, "average": cmd_average,
                "space": cmd_space}[args.cmd](args)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
