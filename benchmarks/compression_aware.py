"""Compression-aware SR on real x264 frames: Y-PSNR of bicubic upsampling, ``elsr`` and ``elsr-h264`` on Vid4.

Each sequence (lossless frames, in no training set) is cropped to a multiple of 4, MATLAB-bicubic downscaled x2,
rounded to 8 bits, sent through x264 (medium, 25 fps, one clip: real I/P/B frames) at each CRF, decoded, and
upscaled; Y-PSNR against the original frames under the published protocol (crop = scale, 8-bit output), mean over
frames. Run from the repository root:

    python benchmarks/compression_aware.py --json benchmarks/compression_aware.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from mobile_sr.core.files import atomic_write_text
from mobile_sr.data.codec_lr import vid4_codec_images
from mobile_sr.evaluation import Pipeline, bicubic, evaluate
from mobile_sr.models import load_model
from mobile_sr.models.deploy import deploy

VID4 = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "video" / "vid4"


def measure(clips: list[str], crfs: list[int], models: list[str], scale: int = 2, frames: int | None = None,
            vid4: Path = VID4) -> dict:
    """{clip: {"crf N": {method: Y-PSNR}}} for bicubic upsampling and each model, on the same decoded frames."""
    upscalers = {"bicubic": lambda t: bicubic(t, scale)}
    upscalers |= {name: deploy(load_model(name, scale)).upscaler for name in models}
    out: dict = {}
    for clip in clips:
        out[clip] = {}
        for crf in crfs:
            images = vid4_codec_images(vid4 / clip, scale, crf, frames=frames)
            out[clip][f"crf {crf}"] = {name: round(evaluate(Pipeline(up, scale), images, with_ssim=False).psnr, 3)
                                       for name, up in upscalers.items()}
            print(clip, crf, out[clip][f"crf {crf}"], flush=True)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", default="city,walk")
    ap.add_argument("--crf", default="26,32,38")
    ap.add_argument("--models", default="elsr,elsr-h264")
    ap.add_argument("--frames", type=int, default=None, help="first N frames of each clip (default: all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    table = measure(a.clips.split(","), [int(c) for c in a.crf.split(",")], a.models.split(","), frames=a.frames)
    doc = {"protocol": "Vid4, HR cropped to a multiple of 4 -> MATLAB bicubic x2 -> 8-bit -> x264 medium 25 fps "
                       "(one clip) at CRF -> decoded -> upscaler; Y-PSNR (BT.601), crop 2, 8-bit output, mean over "
                       f"{'all' if a.frames is None else f'the first {a.frames}'} frames",
           "y_psnr": table}
    if a.json:
        atomic_write_text(a.json, json.dumps(doc, indent=2) + "\n")
