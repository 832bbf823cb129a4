"""PSNR and SSIM under the protocol that published SR tables use.

Protocol (``../shared/datasets/README.md``, BasicSR's ``calculate_psnr``/``calculate_ssim``):
images are rounded to 8 bits, optionally converted to the Y channel of BT.601 YCbCr,
``crop_border`` pixels are cut from every side, and PSNR/SSIM are computed on [0, 255] values.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def rgb_to_y(img: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of RGB in [0,1] (..., 3, H, W) -> Y in [16, 235] scale of [0, 255], (..., 1, H, W)."""
    r, g, b = img[..., 0:1, :, :], img[..., 1:2, :, :], img[..., 2:3, :, :]
    return 16.0 + 65.481 * r + 128.553 * g + 24.966 * b


def _prepare(img: torch.Tensor, crop_border: int, test_y_channel: bool) -> torch.Tensor:
    img = img.detach().to(torch.float64).clamp(0, 1)
    img = torch.round(img * 255) / 255  # what a saved 8-bit image holds
    if img.dim() == 3:
        img = img.unsqueeze(0)
    img = rgb_to_y(img) if test_y_channel else img * 255
    if crop_border:
        img = img[..., crop_border:-crop_border, crop_border:-crop_border]
    return img


def psnr(sr: torch.Tensor, hr: torch.Tensor, crop_border: int = 0, test_y_channel: bool = True) -> float:
    """PSNR in dB between two RGB images in [0,1] of shape (3,H,W) or (1,3,H,W)."""
    if sr.shape != hr.shape:
        raise ValueError(f"psnr: shapes differ, {tuple(sr.shape)} vs {tuple(hr.shape)}")
    a, b = _prepare(sr, crop_border, test_y_channel), _prepare(hr, crop_border, test_y_channel)
    mse = torch.mean((a - b) ** 2).item()
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] @ g[None, :])[None, None]


def ssim(sr: torch.Tensor, hr: torch.Tensor, crop_border: int = 0, test_y_channel: bool = True) -> float:
    """SSIM (11x11 Gaussian, sigma 1.5, K1=0.01, K2=0.03, 'valid' filtering), averaged over channels."""
    if sr.shape != hr.shape:
        raise ValueError(f"ssim: shapes differ, {tuple(sr.shape)} vs {tuple(hr.shape)}")
    a, b = _prepare(sr, crop_border, test_y_channel), _prepare(hr, crop_border, test_y_channel)
    c = a.shape[1]
    a, b = a.reshape(-1, 1, *a.shape[-2:]), b.reshape(-1, 1, *b.shape[-2:])
    win = _gaussian_window()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = F.conv2d(a, win), F.conv2d(b, win)
    s_aa = F.conv2d(a * a, win) - mu_a**2
    s_bb = F.conv2d(b * b, win) - mu_b**2
    s_ab = F.conv2d(a * b, win) - mu_a * mu_b
    m = ((2 * mu_a * mu_b + c1) * (2 * s_ab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (s_aa + s_bb + c2))
    return float(m.reshape(-1, c, *m.shape[-2:]).mean().item())
