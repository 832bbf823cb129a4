"""The weights that ship in the package reach the figures the README and their manifests claim."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mobile_sr.data.datasets import load_benchmark, load_benchmark_at
from mobile_sr.evaluation import Jpeg, Pipeline, bicubic_pipeline, evaluate, pipeline_for
from mobile_sr.models import DEFAULT_MODEL, create_model, load_model, manifest, shipped_scales
from mobile_sr.models.ofa import Arch
from mobile_sr.train.ship import heldout_frames

from .conftest import shared_or_skip

# Floors never copied from a manifest. FSRCNN: the foundation issue's (Set5, Set14). ELSR: its issue's "bicubic
# + 2.5 dB" Set5 at x2, and at x4 two thirds of published FSRCNN's x4 gain over bicubic (2.28 dB) rounded down to
# 1.5 dB; Set14 gains are 0.6 of Set5's, as published FSRCNN's are (2.30/3.32 and 1.50/2.28). Bicubic is the
# published table (33.68 / 30.33 at x2, 30.40 / 27.63 at x3, 28.43 / 26.09 at x4), reproduced by test_data_metrics.
# FSRCNN x3: Set5 is issue 15's target (32.9, published 33.16); Set14 is bicubic + 0.6 of that Set5 gain.
BICUBIC = {2: (33.68, 30.33), 3: (30.40, 27.63), 4: (28.43, 26.09)}
FLOORS = {("fsrcnn", 2): (36.5, 32.2), ("fsrcnn", 3): (32.9, BICUBIC[3][1] + 0.6 * (32.9 - BICUBIC[3][0])),
          ("fsrcnn", 4): (30.2, 27.1),
          ("elsr", 2): (BICUBIC[2][0] + 2.5, BICUBIC[2][1] + 0.6 * 2.5),
          ("elsr", 4): (BICUBIC[4][0] + 1.5, BICUBIC[4][1] + 0.6 * 1.5)}
SHIPPED = [(name, s) for name in ("fsrcnn", "elsr") for s in shipped_scales(name)]


def test_the_required_weights_ship():
    for name, scale in [("fsrcnn", 2), ("fsrcnn", 3), ("fsrcnn", 4), ("elsr", 2), ("elsr", 4)]:
        assert (name, scale) in SHIPPED, f"{name} x{scale} weights are missing from mobile_sr/models/weights"


@pytest.mark.parametrize("name,scale", SHIPPED)
def test_shipped_model_matches_manifest_on_set5(name, scale):
    man = manifest(name, scale)
    for key in ("command", "steps", "wall_minutes", "data", "eval"):
        assert key in man, key
    res = evaluate(Pipeline(create_model(name, scale), scale), load_benchmark("Set5", scale))
    assert res.psnr == pytest.approx(man["eval"]["Set5"]["psnr"], abs=0.01)
    assert res.ssim == pytest.approx(man["eval"]["Set5"]["ssim"], abs=1e-3)
    floor = FLOORS.get((name, scale))
    if floor:
        assert res.psnr >= floor[0]


@pytest.mark.parametrize("name,scale", [k for k in FLOORS if k in SHIPPED and FLOORS[k][1]])
def test_shipped_model_set14_floor(shared_benchmark, name, scale):
    res = evaluate(Pipeline(create_model(name, scale), scale), load_benchmark("Set14", scale, shared_benchmark),
                   with_ssim=False)
    assert res.psnr >= FLOORS[(name, scale)][1]
    assert res.psnr == pytest.approx(manifest(name, scale)["eval"]["Set14"]["psnr"], abs=0.01)


OFA_SUBNETS = [(n, s) for n in ("ofa-s", "ofa-m", "ofa-l") for s in (2, 4)]


def test_the_supernet_and_three_subnets_per_scale_ship():
    assert shipped_scales("ofa-sr") == [2, 4]
    for name, scale in OFA_SUBNETS:
        assert scale in shipped_scales(name), f"{name} x{scale} is missing from mobile_sr/models/weights"
    man = manifest("ofa-sr", 2)
    commands = man["command"] if isinstance(man["command"], list) else [man["command"]]
    assert all(c.startswith("mobile-sr train --model ofa-sr") for c in commands) and man["validation_history"]


@pytest.mark.parametrize("name,scale", OFA_SUBNETS)
def test_shipped_subnet_is_cut_from_the_supernet_and_matches_its_manifest(name, scale):
    """The shipped subnet's weights are the supernet's, sliced for its arch (to float rounding), unless its manifest
    records a fine-tune of the cut after the search: then the graph is the cut's, or at x4 the cut's body with the
    one-shuffle tail (``tail=direct``, ofa-s and ofa-m x4: for FSRCNN's latency), given in a fine-tune's --arch."""
    man = manifest(name, scale)
    search, *fine_tunes = man["command"] if isinstance(man["command"], list) else [man["command"]]
    assert search.startswith(f"mobile-sr search --scale {scale} --latency-ms")
    assert all(c.startswith(f"mobile-sr train --model {name} --scale {scale} ") for c in fine_tunes)
    assert not fine_tunes or f"--init-from {name}" in fine_tunes[0]  # later runs continue the one before
    assert man["measured"]["latency_ms"] > 0 and man["predicted"]["latency_ms"] <= man["budget_ms"]
    sub = create_model(name, scale)
    cut = create_model("ofa-sr").get_subnet(Arch.from_dict(man["arch"]))
    tail = sub.config().get("tail")
    assert {k: v for k, v in sub.config().items() if k != "tail"} == cut.config()
    assert tail is None or any(f"--arch tail={tail}" in c for c in fine_tunes), "a new tail is trained, not cut"
    res = evaluate(Pipeline(sub, scale), load_benchmark("Set5", scale))
    assert res.psnr == pytest.approx(man["eval"]["Set5"]["psnr"], abs=0.01)
    if fine_tunes:
        body = [k for k in cut.state_dict() if not k.startswith("upsampler.")]
        assert any(not torch.allclose(sub.state_dict()[k], cut.state_dict()[k], atol=1e-4) for k in body)
        return
    # Equal up to float rounding: a 3x3 or 5x5 kernel is the centre of the 7x7 passed through learned transform
    # matrices (a matmul), whose last bit differs between CPUs (AVX-512 here, AVX2 where the subnets were cut).
    # Any retraining would move weights by orders of magnitude more than 1e-6 of their range.
    for (k, a), b in zip(sub.state_dict().items(), cut.state_dict().values(), strict=True):
        assert (a - b).abs().max() <= 1e-6 * a.abs().max(), k


@pytest.mark.parametrize("scale,floor", [(2, (37.00, 32.63)), (4, (30.71, 27.59))])
def test_the_default_model_reaches_published_fsrcnn(shared_benchmark, scale, floor):
    """Issue 15's quality floors for the default model: published FSRCNN (Set5 / Set14)."""
    got = _scores(DEFAULT_MODEL, scale, shared_benchmark)
    assert got[0] >= floor[0] and got[1] >= floor[1], got


def _scores(name: str, scale: int, shared: Path) -> tuple[float, float]:
    pipe = pipeline_for(load_model(name, scale))
    return tuple(evaluate(pipe, load_benchmark(d, scale, root), with_ssim=False).psnr
                 for d, root in (("Set5", None), ("Set14", shared)))


@pytest.mark.slow
@pytest.mark.parametrize("scale", [2, 4])
def test_searched_subnets_beat_elsr_rise_with_the_budget_and_the_default_beats_fsrcnn(shared_benchmark, scale):
    """Floors measured here, not read from a manifest: every searched subnet costs more than ELSR, so it must beat
    ELSR; the default model beats FSRCNN on Set5 and Set14 (README); and the search's cuts, cut again here from the
    shipped supernet at each manifest's arch, do not score lower for a larger budget (by more than 0.02 dB). The
    shipped subnets were each fine-tuned after their cut by different recipes (ofa-m x2: 14,000 steps, the last
    re-parameterised; ofa-l: 3,000), so their own order is not the search's and is not held here."""
    from mobile_sr.models.deploy import deploy_subnet

    got = {name: _scores(name, scale, shared_benchmark) for name in ("elsr", "fsrcnn", "ofa-s", "ofa-m", "ofa-l")}
    supernet = create_model("ofa-sr")
    cuts = [tuple(evaluate(Pipeline(deploy_subnet(supernet, Arch.from_dict(manifest(n, scale)["arch"])), scale),
                           load_benchmark(d, scale, root), with_ssim=False).psnr
                  for d, root in (("Set5", None), ("Set14", shared_benchmark))) for n in ("ofa-s", "ofa-m", "ofa-l")]
    for i, dataset in enumerate(("Set5", "Set14")):
        subnets = [got[n][i] for n in ("ofa-s", "ofa-m", "ofa-l")]
        assert min(subnets) > got["elsr"][i], (dataset, got)
        assert got[DEFAULT_MODEL][i] > got["fsrcnn"][i], (dataset, got)
        ordered = [c[i] for c in cuts]
        assert all(b >= a - 0.02 for a, b in zip(ordered, ordered[1:], strict=False)), (dataset, cuts)


# The learned-downscaling issue's floors (Set14, Y, crop = scale, LR saved as 8-bit): never read from a manifest.
PAIR_FLOORS = {2: {"Set14": 36.5, "lr": 36.0}, 4: {"Set14": 29.0, "lr": 36.0}}
HELDOUT_GAIN_X2 = 2.5  # dB over the same upscaler on bicubic LR, on natural images never trained on


def test_the_rescale_pair_ships_at_x2_and_x4():
    assert shipped_scales("rescale") == [2, 4]
    for scale in (2, 4):
        man = manifest("rescale", scale)
        commands = man["command"] if isinstance(man["command"], list) else [man["command"]]
        assert all(c.startswith("mobile-sr train --model rescale") for c in commands)
        assert man["training"]["jpeg"] and "8-bit rounding" in man["training"]["pipeline"]


# The TAD pairs, each with its upscaler architecture's shipped model (trained on bicubic LR) as the baseline.
TAD_PAIRS = [("rescale", 2, "elsr"), ("rescale", 4, "elsr"), ("rescale-fsrcnn", 2, "fsrcnn")]


def test_the_fsrcnn_sized_pair_ships_at_x2():
    assert shipped_scales("rescale-fsrcnn") == [2]
    assert manifest("rescale-fsrcnn", 2)["baseline"]["model"] == "fsrcnn"


@pytest.mark.parametrize("name,scale,_", TAD_PAIRS)
def test_shipped_pair_reaches_its_floors_with_an_honest_lr(shared_benchmark, name, scale, _):
    pair = load_model(name, scale)
    man = manifest(name, scale)
    for dataset, root in (("Set5", None), ("Set14", shared_benchmark)):
        res = evaluate(pipeline_for(pair), load_benchmark(dataset, scale, root), with_ssim=False)
        assert res.psnr == pytest.approx(man["eval"][dataset]["psnr"], abs=0.01)
        assert res.lr_psnr == pytest.approx(man["eval"][dataset]["lr_psnr"], abs=0.01)
    assert res.psnr >= PAIR_FLOORS[scale]["Set14"] and res.lr_psnr >= PAIR_FLOORS[scale]["lr"]


@pytest.mark.slow
@pytest.mark.parametrize("name,scale,baseline,quality", [(n, s, b, q) for n, s, b in TAD_PAIRS for q in (75, 90)])
def test_through_jpeg_the_pair_never_falls_below_the_bicubic_lr_pipeline(shared_benchmark, name, scale, baseline,
                                                                          quality):
    """The LR compressed as phones send it: the learned pipeline against the same upscaler architecture trained on
    bicubic LR (the shipped ELSR or FSRCNN) given the bicubic LR through the same JPEG."""
    images = load_benchmark("Set14", scale, shared_benchmark)
    learned = evaluate(pipeline_for(load_model(name, scale), codec=Jpeg(quality)), images, with_ssim=False)
    plain = evaluate(pipeline_for(load_model(baseline, scale), codec=Jpeg(quality)), images, with_ssim=False)
    assert learned.psnr > plain.psnr, (learned.psnr, plain.psnr)


@pytest.mark.parametrize("name,baseline", [(n, b) for n, s, b in TAD_PAIRS if s == 2])
def test_on_held_out_natural_images_the_learned_lr_gains_over_bicubic_lr(shared_benchmark, name, baseline):
    """Vid4 frames: natural images in no training or benchmark set. HR -> pair vs HR -> bicubic LR -> the same
    upscaler architecture trained on bicubic LR."""
    images = heldout_frames(shared_or_skip("video", "vid4"), 2)
    assert [i.name for i in images] == ["city", "walk"]
    learned = evaluate(pipeline_for(load_model(name, 2)), images, with_ssim=False).psnr
    plain = evaluate(pipeline_for(load_model(baseline, 2)), images, with_ssim=False).psnr
    assert learned - plain >= HELDOUT_GAIN_X2, (learned, plain)


JPEG_AWARE_GAIN = 0.5  # dB over the bicubic-LR pipeline with the same upscaler, at q75 and q90 (issue 13)


@pytest.mark.slow
@pytest.mark.parametrize("scale,quality", [(2, 75), (2, 90), (4, 75), (4, 90)])
def test_the_car_pair_through_jpeg_beats_the_bicubic_lr_pipeline(shared_benchmark, scale, quality):
    """rescale-car trained with the differentiable JPEG: its kernels cannot hide detail in ±1-level noise, so what it
    gains survives a real libjpeg at both qualities. At x2 by the issue's JPEG-aware margin (0.5 dB); at x4, where
    `rescale` falls below the bicubic-LR pipeline at q90, it must stay above it."""
    assert shipped_scales("rescale-car") == [2, 4]
    images = load_benchmark("Set14", scale, shared_benchmark)
    pair = load_model("rescale-car", scale)
    learned = evaluate(pipeline_for(pair, codec=Jpeg(quality)), images, with_ssim=False).psnr
    plain = evaluate(pipeline_for(load_model("elsr", scale), codec=Jpeg(quality)), images, with_ssim=False).psnr
    assert learned - plain >= (JPEG_AWARE_GAIN if scale == 2 else 0.0), (learned, plain)
    png = evaluate(pipeline_for(pair), load_benchmark("Set5", scale), with_ssim=False)
    assert png.psnr == pytest.approx(manifest("rescale-car", scale)["eval"]["Set5"]["psnr"], abs=0.01)


# The scale-arbitrary pair (issue 13's AIDN step) at the issue's three factors and one off the training grid (quarter
# steps). Floors measured here: the same restoration given the bicubic LR, and bicubic down + up. The margin is the
# gain the issue counts as real for JPEG-aware training (0.5 dB); the LR floor is the pairs' (36 dB).
AIDN_FACTORS = (1.5, 2.2, 2.5, 3.5)


@pytest.mark.parametrize("scale", AIDN_FACTORS)
def test_the_scale_arbitrary_pair_beats_bicubic_down_with_the_same_restoration(shared_benchmark, scale):
    images = load_benchmark_at("Set14", scale, shared_benchmark)
    pair = load_model("rescale-aidn", scale)
    learned = evaluate(pipeline_for(pair), images, with_ssim=False)
    same = evaluate(replace(pipeline_for(pair), downscale=None), images, with_ssim=False).psnr
    plain = evaluate(bicubic_pipeline(scale), images, with_ssim=False).psnr
    assert learned.psnr >= max(same, plain) + JPEG_AWARE_GAIN, (learned.psnr, same, plain)
    assert learned.lr_psnr >= PAIR_FLOORS[2]["lr"], learned.lr_psnr
    if scale in manifest("rescale-aidn", 2)["scales"]:
        assert learned.psnr == pytest.approx(manifest("rescale-aidn", scale)["eval"][f"x{scale:g}"]["Set14"]["psnr"],
                                             abs=0.01)


@pytest.mark.slow
@pytest.mark.parametrize("quality", [75, 90])
def test_through_jpeg_the_scale_arbitrary_pair_stays_above_the_same_restoration_of_bicubic_lr(shared_benchmark,
                                                                                           quality):
    """Its second stage trained through the differentiable JPEG: at x2.5 (on the grid) and x3.3 (off it) the learned
    LR, JPEG-compressed as phones send it, still restores better than the bicubic LR through the same JPEG."""
    for scale in (2.5, 3.3):
        images = load_benchmark_at("Set14", scale, shared_benchmark)
        pipe = pipeline_for(load_model("rescale-aidn", scale), codec=Jpeg(quality))
        learned = evaluate(pipe, images, with_ssim=False).psnr
        same = evaluate(replace(pipe, downscale=None), images, with_ssim=False).psnr
        assert learned > same, (scale, learned, same)


def _supernet_pair_scales() -> list:
    return shipped_scales("rescale-ofa")


def test_the_supernet_pair_ships_with_its_record_and_its_scored_subnets():
    """rescale-ofa: the ofa-sr supernet's commands, then the joint run's; its subnets scored on its own LR."""
    from mobile_sr.search.run import shipped_accuracy

    assert 2 in _supernet_pair_scales()
    for scale in _supernet_pair_scales():
        man, supernet = manifest("rescale-ofa", scale), manifest("ofa-sr", 2)["command"]
        assert man["command"][: len(supernet)] == supernet
        assert all(c.startswith(f"mobile-sr train --model rescale-ofa --scale {scale} ")
                   for c in man["command"][len(supernet):])
        assert man["training"]["jpeg"] and "8-bit rounding" in man["training"]["pipeline"]
    for scale in _supernet_pair_scales():
        rows = json.loads(shipped_accuracy("rescale-ofa", scale).read_text())["subnets"]
        assert {r["arch"]["scale"] for r in rows} == {scale} and len(rows) >= 150


@pytest.mark.parametrize("scale", [2, 4])
def test_the_supernet_pair_cut_on_ofa_ls_graph_reaches_the_pair_floors(shared_benchmark, scale):
    """Cut at ofa-l's arch, the pair's upscaler *is* ofa-l's graph (so no slower than ofa-l on any runtime), and
    the learned pipeline reaches the issue's floors with an honest LR."""
    if scale not in _supernet_pair_scales():
        pytest.skip(f"rescale-ofa ships no x{scale} weights")
    from mobile_sr.models import load_supernet
    from mobile_sr.models.deploy import deploy_pair_subnet

    pair = load_supernet("rescale-ofa", pairs=True, scale=scale)
    cut = deploy_pair_subnet(pair, Arch.from_dict(manifest("ofa-l", scale)["arch"]))
    assert cut.upscaler.config() == create_model("ofa-l", scale).config()
    model = load_model("ofa-l", scale)
    res = evaluate(Pipeline(cut.upscaler, scale, downscale=cut.downscaler),
                   load_benchmark("Set14", scale, shared_benchmark), with_ssim=False)
    assert res.psnr >= PAIR_FLOORS[scale]["Set14"] and res.lr_psnr >= PAIR_FLOORS[scale]["lr"], (res.psnr, res.lr_psnr)
    plain = evaluate(pipeline_for(model), load_benchmark("Set14", scale, shared_benchmark), with_ssim=False).psnr
    assert res.psnr > plain


def test_every_subnet_of_the_supernet_pair_gains_on_held_out_images():
    """Progressive shrinking still holds with the downscaler: each subnet, scored on held-out training-folder images
    (natural images never trained on), restores the pair's LR at least 2.5 dB (x2, the issue's held-out target)
    better than the same subnet of ofa-sr restores the bicubic LR; at x4, which has no such target, it must gain.
    Both tables score the same archs and images."""
    from mobile_sr.search.run import SHIPPED_ACCURACY, shipped_accuracy

    def table(path: Path) -> dict:
        return {json.dumps(r["arch"], sort_keys=True): r["psnr"] for r in json.loads(path.read_text())["subnets"]}

    plain = table(SHIPPED_ACCURACY)
    for scale in _supernet_pair_scales():
        learned = table(shipped_accuracy("rescale-ofa", scale))
        common = [k for k in learned if k in plain and json.loads(k)["scale"] == scale]
        assert len(common) >= 2  # at least the largest and the smallest
        gains = [learned[k] - plain[k] for k in common]
        assert min(gains) >= (HELDOUT_GAIN_X2 if scale == 2 else 0.0), (scale, min(gains))
