"""Peak memory of ``mobile-sr video upscale`` on a 720p, 300-frame clip: the bound the streaming design promises.

    python benchmarks/video_rss.py [--model elsr] [--frames 300] [--runtime auto] [--json benchmarks/video_rss.json]

Builds a 1280x720 H.264 clip of ``--frames`` frames from ``../shared/datasets/video/clips/04_coffee.mp4`` (its 287
frames, looped), runs ``mobile-sr video upscale`` on it in a child process (x2: a 2560x1440 video at CRF 18), and
reads the child's peak resident set size from the kernel (``getrusage(RUSAGE_CHILDREN).ru_maxrss``: every page the
process ever held, Python, torch and the runtime included). The whole clip decoded would be 300 x 2.8 MB = 830 MB at
720p and 3.3 GB at 1440p; a bounded run holds one frame of each, the model and the encoder's lookahead.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLIP = REPO.parent / "shared" / "datasets" / "video" / "clips" / "04_coffee.mp4"
LIMIT_MB = 1536  # the bound: 1.5 GB


def make_clip(dst: Path, frames: int) -> None:
    """``frames`` 720p frames of the coffee clip (looped), re-encoded once, with their audio dropped."""
    from mobile_sr.data.video import encode_bytes, read_frames

    def looped():  # noqa: ANN202
        n = 0
        while n < frames:
            for f in read_frames(CLIP):
                if n == frames:
                    return
                yield f
                n += 1

    data, _ = encode_bytes(looped(), crf=23, preset="veryfast")
    dst.write_bytes(data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="elsr")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--runtime", default="auto")
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "video_rss.json")
    args = ap.parse_args()
    if not CLIP.is_file():
        sys.exit(f"error: {CLIP} is absent (needs ../shared/datasets)")
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "coffee720p.mp4"
        make_clip(clip, args.frames)
        cmd = [sys.executable, "-m", "mobile_sr", "video", "upscale", str(clip), "-o", str(Path(tmp) / "sr.mp4"),
               "--model", args.model, "--runtime", args.runtime, "--no-progress"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode:
            sys.exit(f"error: video upscale failed: {proc.stderr.strip()}")
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    doc = {"clip": f"{CLIP.name}, {args.frames} frames of 1280x720 (looped), x2 -> 2560x1440 at CRF 18",
           "model": args.model, "runtime": args.runtime, "peak_rss_mb": round(peak_mb, 1), "limit_mb": LIMIT_MB,
           "within_limit": peak_mb <= LIMIT_MB, "wall_seconds": round(wall, 1), "output": proc.stdout.strip()}
    print(f"peak RSS {peak_mb:.0f} MB (limit {LIMIT_MB} MB) for {args.frames} frames 720p -> 1440p with {args.model}, "
          f"{wall:.0f} s\n{proc.stdout.strip()}")
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
