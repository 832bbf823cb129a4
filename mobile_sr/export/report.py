"""The summary table ``mobile-sr export`` prints after a run."""

from __future__ import annotations

from . import Result


def _db(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def table(results: list[Result]) -> str:
    """One row per artifact, the fp32 reference, then every problem found, one per line."""
    head = ("file", "size", "precision", "export s", "parity dB", "Set5 dB", "delegated/total", "check")
    body = [(r.path.name, _size(r.bytes), r.precision, f"{r.seconds:.1f}", _db(r.verification.parity_psnr_db),
             _db(r.verification.set5_psnr_db), f"{r.ops.delegated}/{r.ops.total}" if r.ops else "-",
             r.verification.status) for r in results]
    widths = [max(len(row[i]) for row in (head, *body)) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in (head, *body)]
    fp32 = next((r.verification.set5_fp32_psnr_db for r in results if r.verification.set5_fp32_psnr_db), None)
    if fp32 is not None:
        lines.append(f"Set5 PSNR of the fp32 PyTorch model, tiled the same way: {fp32:.2f} dB")
    source = next((r.verification.lr_source for r in results if r.verification.lr_source), None)
    if source and source != "published bicubic LR":
        lines.append(f"Set5 LR: {source}")
    lr_db = next((r.verification.lr_psnr_db for r in results if r.verification.lr_psnr_db is not None), None)
    if lr_db is not None:
        lines.append(f"the artifact's 8-bit LR is {lr_db:.2f} dB (Y) from the MATLAB-bicubic LR")
    for r in results:
        if r.ops and r.ops.outside:
            lines.append(f"{r.path.name}: outside the delegate: {', '.join(r.ops.outside)}")
        lines += [f"{r.path.name}: {problem}" for problem in r.verification.problems]
    for warning in dict.fromkeys(w for r in results for w in r.verification.warnings):  # once, not per artifact
        lines.append(f"warning: {warning}")
    return "\n".join(lines)
