"""Rate-distortion on Vid4: BD-rate of every delivery method against full-resolution x264, and the hull.

    python benchmarks/video_rd.py [--seqs city,walk] [--finetune-seconds 60] [--finetune-every 2]
                                  [--ssim-every 12] [--json benchmarks/video_rd.json]
                                  [--plot benchmarks/video_rd_{seq}.png] [--cache runs/video_rd_cache.json]

Each sequence (lossless frames, all of them, 25 fps) goes through :func:`mobile_sr.evaluation.video.compare`:
x2, x264 preset medium, one x264 thread and one torch thread (the machine is shared). x264 is not quite
bit-exact from one encode to the next even so (see ``mobile_sr.data.video``): a point's rate moves by up to
~1.5%. ``full`` runs at CRF 32-47 (about 32-24 dB Y-PSNR, the issue's low-rate regime), the
downscaled methods at CRF 22-46 (from full's rates down to full's lowest PSNR), the hull's wide sweep adds CRF
20-29 for full (up to about 38 dB) and 10-19 for the best downscaled method. ``finetuned-sr`` fine-tunes
``elsr`` per rate point on that rate's decoded frames (every ``--finetune-every``-th frame, for
``--finetune-seconds``) with ``mobile_sr.train.finetune`` and adds the streamed weight update's bytes to the
rate where the update pays for them (``evaluation.video.choose_updates``); ``codec-sr`` runs when ``elsr-h264``
ships.

SSIM-Y is measured on every ``--ssim-every``-th frame (``metrics.ssim`` costs ~2 s a frame on one core); Y-PSNR,
which BD-rate uses, on every frame. Measured points are kept in ``--cache``, so a later run that adds a method
(``codec-sr`` once its weights ship) measures only the new points.

BD-rate depends on where the curves overlap in PSNR. ``benchmarks/video_rd_samecrf.json`` is the sensitivity run
with the downscaled methods at full's own CRFs (the issue trial's choice; their curves then overlap full's only
at its lowest ~3 dB, where downscaling wins most), and ``video_rd_recheck.json`` the earlier design, the downscaled
methods at CRF 22-37 only (their curves stop ~1.5 dB above full's lowest point):

    python benchmarks/video_rd.py --methods full,bicubic-bicubic,bicubic-sr,codec-sr --down-crf 32-47:3 \
        --json benchmarks/video_rd_samecrf.json --plot ''
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from mobile_sr.core.files import atomic_write, atomic_write_text
from mobile_sr.core.schema import validate
from mobile_sr.data.video import load_frames
from mobile_sr.evaluation import video as rd
from mobile_sr.evaluation.video import RDPoint

HERE = Path(__file__).resolve().parent
VID4 = HERE.parents[1] / "shared" / "datasets" / "video" / "vid4"


def finetune_adapt(seconds: float, every: int, log: list[dict]) -> rd.Adapt:
    """The ``Adapt`` of finetuned-sr: ``train.finetune`` on every ``every``-th decoded frame (the model is then
    scored on all frames); each run's steps and PSNR before/after go to ``log``."""
    from mobile_sr.train.finetune import finetune

    def adapt(model, lr, hr):  # noqa: ANN001, ANN202
        res = finetune(model, lr[::every], hr[::every], seconds=seconds, seed=len(log))
        log.append({"steps": res.steps, "seconds": round(res.seconds, 1), "bytes": res.bytes,
                    "psnr_before": round(res.psnr_before, 3), "psnr_after": round(res.psnr_after, 3)})
        return res.model, res.bytes

    return adapt


def without_model_bits(one: dict, raw: list[RDPoint]) -> float | None:
    """finetuned-sr's BD-rate were its model update free and sent at every point (``raw``: its points as measured,
    before :func:`choose_updates`): the bound it tends to as the update is amortised over a longer video (NAS
    streams one model per video, minutes long). A labelled side figure, never the headline one."""
    if not raw:
        return None
    free = [RDPoint(p.crf, p.base_kbps if p.base_kbps is not None else p.kbps, p.psnr_y, p.ssim_y) for p in raw]
    full = [RDPoint(p["crf"], p["kbps"], p["psnr_y"], p["ssim_y"]) for p in one["methods"]["full"]["points"]]
    return rd.bd_rate(full, free).percent


def load_cache(path: Path | None) -> dict[str, dict[tuple[str, int], RDPoint]]:
    if path is None or not path.exists():
        return {}
    raw = json.loads(path.read_text())
    return {seq: {(m, int(c)): RDPoint(**p) for m, crfs in pts.items() for c, p in crfs.items()}
            for seq, pts in raw.items()}


def save_cache(path: Path | None, cache: dict[str, dict[tuple[str, int], RDPoint]]) -> None:
    if path is None:
        return
    raw: dict = {}
    for seq, pts in cache.items():
        for (m, c), p in pts.items():
            raw.setdefault(seq, {}).setdefault(m, {})[str(c)] = p.__dict__
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(raw, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seqs", default="city,walk")
    ap.add_argument("--methods", default=None, help="default: every method this installation can run")
    ap.add_argument("--finetune-seconds", type=float, default=60.0)
    ap.add_argument("--finetune-every", type=int, default=2)
    ap.add_argument("--finetune-from", default=rd.DEFAULT_UPSCALER,
                    help="the upscaler finetuned-sr starts from at every rate point (default: elsr, bicubic-sr's; "
                         "elsr-h264 is codec-sr's)")
    ap.add_argument("--ssim-every", type=int, default=12)
    ap.add_argument("--frames", type=int, default=None, help="first N frames (default: all)")
    ap.add_argument("--down-crf", default=None, help="the downscaled methods' CRFs (default: 22-46:3, rd.down_crfs_for); e.g. "
                                                     "32-47:3, the issue trial's same CRFs as full, for a sensitivity run")
    ap.add_argument("--json", type=Path, default=HERE / "video_rd.json")
    ap.add_argument("--no-hull", action="store_true", help="skip the hull's wide sweep")
    ap.add_argument("--plot", default=str(HERE / "video_rd_{seq}.png"), help="'' for none")
    ap.add_argument("--cache", type=Path, default=HERE.parent / "runs" / "video_rd_cache.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    ft_log: dict[str, list[dict]] = {}
    cache = load_cache(args.cache)
    names = args.methods.split(",") if args.methods else list(rd.default_methods(2, finetune=True))
    doc: dict = {"sequences": {}, "finetune": {"seconds_per_rate_point": args.finetune_seconds,
                                               "every_nth_frame": args.finetune_every, "runs": ft_log},
                 "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])}
    raw_ft: dict[str, list[RDPoint]] = {}
    for seq in args.seqs.split(","):
        frames = load_frames(VID4 / seq, args.frames)
        ft_log[seq] = []
        adapt = finetune_adapt(args.finetune_seconds, args.finetune_every, ft_log[seq])
        methods = rd.build_methods([n for n in names if n != "finetuned-sr"], 2)
        if "finetuned-sr" in names:  # in METHODS order, from its own base
            tuned = rd.build_methods(["finetuned-sr"], 2, upscaler=args.finetune_from, adapt=adapt)[-1]
            methods.insert(next((i for i, m in enumerate(methods) if rd.METHODS.index(m.name) > rd.METHODS.index(
                "finetuned-sr")), len(methods)), tuned)
        setup = rd.Setup(scale=2, codec="h264", threads=1, ssim_every=args.ssim_every)
        key = f"{seq} frames={args.frames or 'all'} ssim_every={args.ssim_every}"
        if args.finetune_from != rd.DEFAULT_UPSCALER:  # finetuned-sr's points from another base are other points
            key += f" finetune_from={args.finetune_from}"
        measured = cache.setdefault(key, {})
        t0 = time.perf_counter()

        def progress(name: str, p: RDPoint, seq: str = seq, t0: float = t0) -> None:
            print(f"  [{time.perf_counter() - t0:6.0f} s] {seq} {name} crf {p.crf}: {p.kbps:.0f} kbps "
                  f"{p.psnr_y:.2f} dB {p.ssim_y:.4f}", flush=True)
            save_cache(args.cache, cache)

        down = rd.parse_crfs(args.down_crf, "--down-crf") if args.down_crf else None
        comp = rd.compare(frames, methods, setup, down_crfs=down, reference=f"vid4/{seq}", on_point=progress,
                          measured=measured, hull_crfs=None if args.no_hull else rd.HULL_CRFS)
        save_cache(args.cache, cache)
        one = comp.as_json()
        swept = {q["crf"] for q in one["methods"].get("finetuned-sr", {}).get("points", [])}
        raw_ft[seq] = [p for (m, c), p in sorted(measured.items()) if m == "finetuned-sr" and c in swept]
        problems = validate(one, rd.SCHEMA)
        if problems:
            raise SystemExit(f"{seq}: invalid document: {problems[0]}")
        doc["sequences"][seq] = one
        print(rd.table(one), flush=True)
        if args.plot and rd.plot_available():
            atomic_write(args.plot.format(seq=seq), rd.plot_png(one))
    summary = {}
    for seq, one in doc["sequences"].items():
        bd = {n: m["bd_rate_vs_full_percent"] for n, m in one["methods"].items() if n != "full"}
        base = bd.get("bicubic-sr")
        summary[seq] = {
            "bd_rate_vs_full_percent": bd,
            "best": min((v, n) for n, v in bd.items() if v is not None)[1] if any(v is not None for v in bd.values())
            else None,
            "bd_rate_minus_bicubic_sr_points": {n: None if (v is None or base is None) else round(v - base, 2)
                                            for n, v in bd.items() if n in ("finetuned-sr", "codec-sr")},
            "finetuned_sr_without_model_bits_percent": without_model_bits(one, raw_ft.get(seq, [])),
            "finetuned_sr_updates_sent": None if "finetuned-sr" not in one["methods"] else
            f"{sum(1 for p in one['methods']['finetuned-sr']['points'] if p.get('model_bytes'))} of "
            f"{len(one['methods']['finetuned-sr']['points'])}",
            "hull_bd_rate_vs_full_percent": one["hull"]["bd_rate_vs_full_percent"] if one["hull"] else None,
            "hull_switch_kbps": one["hull"]["switch_kbps"] if one["hull"] else None,
        }
    doc["summary"] = summary
    if args.json.exists():  # fine-tuning runs whose points came from --cache: keep the log of when they ran
        old = json.loads(args.json.read_text()).get("finetune", {}).get("runs", {})
        for seq, runs in ft_log.items():
            if not runs and old.get(seq):
                runs.extend(old[seq])
    atomic_write_text(args.json, json.dumps(doc, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
