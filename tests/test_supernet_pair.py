"""Issue 13 step 3, the OFA seed's setting: one learned downscaler trained with the whole supernet (every subnet
restores its 8-bit LR), then ``mobile-sr search`` cuts the pair's upscaler for a budget and keeps the downscaler."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from mobile_sr.cli import main
from mobile_sr.data.imresize import imresize
from mobile_sr.models import load_model, load_supernet
from mobile_sr.models.deploy import deploy
from mobile_sr.models.ofa import OFASR, OFASubnet, largest, smallest
from mobile_sr.models.pair import SRPair
from mobile_sr.search import run
from mobile_sr.train.channel import round_8bit
from mobile_sr.train.ofa import OFATrainConfig, archs_for_step, build_net, step_loss

from .conftest import REPO, _cli, synthetic_latency

SET5_HR = str(REPO / "mobile_sr" / "assets" / "benchmark" / "Set5" / "x2" / "HR")


def _pair_net(lr_weight: float = 1.0) -> tuple[OFATrainConfig, SRPair]:
    cfg = OFATrainConfig(data=[], out="", pair="rescale-ofa", scale=2, lr_weight=lr_weight)
    net, model = build_net(cfg)
    assert isinstance(net, SRPair) and net.upscaler is model and isinstance(model, OFASR)
    torch.manual_seed(0)
    with torch.no_grad():  # leave the untrained start (bicubic LR, nearest-neighbour SR): every weight matters
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return cfg, net


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    hr = torch.rand(2, 3, 32, 32)
    return imresize(hr.double(), 1 / 2).float(), hr


def test_every_subnet_trains_the_one_downscaler_on_its_8bit_lr():
    cfg, net = _pair_net()
    lr, hr = _batch()
    seen = []

    def send(made: torch.Tensor) -> torch.Tensor:
        sent = round_8bit(made)
        seen.append(sent.detach())
        return sent

    grads = []
    for archs in ([largest(2)], [largest(2), smallest(2)]):
        net.zero_grad()
        step_loss(cfg, net, archs, lr, hr, send).backward()
        grads.append(net.downscaler.head[1].weight.grad.clone())
    assert all(torch.equal(s, s.mul(255).round().div(255)) for s in seen), "the subnets restore an 8-bit LR"
    assert len(seen) == 2, "the LR is made once per step and shared by every subnet"
    assert grads[0].abs().sum() > 0, "the gradient flows through the rounding into the downscaler"
    assert not torch.allclose(grads[0], grads[1]), "the smallest subnet's loss reaches the downscaler too"
    # λ·L2 to the MATLAB-bicubic LR: the same step without it differs only by that term's gradient
    cfg0, net0 = _pair_net(lr_weight=0.0)
    step_loss(cfg0, net0, [largest(2)], lr, hr, send).backward()
    assert not torch.allclose(net0.downscaler.out.weight.grad, net.downscaler.out.weight.grad)
    with pytest.raises(ValueError, match="channel"):
        step_loss(cfg, net, [largest(2)], lr, hr, None)


def test_a_supernet_pair_samples_only_its_own_scale():
    cfg = OFATrainConfig(data=[], out="", pair="rescale-ofa", scale=4,
                         steps={"full": 0, "kernel": 0, "depth": 0, "expand": 10})
    assert {archs_for_step(cfg, s)[0] for s in range(6)} == {4}
    with pytest.raises(ValueError, match="not a pair whose upscaler"):
        OFATrainConfig(data=[], out="", pair="rescale").check()
    with pytest.raises(ValueError, match="not x3"):
        OFATrainConfig(data=[], out="", pair="rescale-ofa", scale=3).check()


def _pair_args(out, extra=()):
    return ["train", "--model", "rescale-ofa", "--scale", "2", "--data", SET5_HR, "--out", str(out),
            "--phase-steps", "0,0,0,6", "--init-from", "ofa-sr", "--batch", "2", "--patch", "32", "--val-every", "0",
            "--ckpt-every", "3", "--threads", "1", "--no-progress", *extra]


@pytest.fixture(scope="module")
def pair_run(tmp_path_factory, kill_at_checkpoint):
    """A six-step supernet-pair run, straight through, and the same run killed after step 3 and resumed."""
    tmp = tmp_path_factory.mktemp("supernet_pair")
    ref = _cli(_pair_args(tmp / "ref"))
    kill_at_checkpoint(_pair_args(tmp / "run"), 3, tmp / "held")
    assert ref.wait(timeout=600) == 0, ref.stdout.read()
    resumed = _cli(_pair_args(tmp / "run", ("--resume",)))
    assert resumed.wait(timeout=600) == 0, resumed.stdout.read()
    return tmp


@pytest.mark.slow
def test_supernet_pair_training_resumes_bit_exact_and_loads_as_a_pair(pair_run):
    a, b = load_file(pair_run / "ref" / "model.safetensors"), load_file(pair_run / "run" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(k.startswith("downscaler.") for k in a) and any(k.startswith("upscaler.stages.") for k in a)
    shipped = load_supernet("ofa-sr").state_dict()
    assert not torch.equal(a["upscaler.head.weight"], shipped["head.weight"]), "the supernet trained"
    assert a["downscaler.out.weight"].abs().max() > 0, "the downscaler trained (it starts as bicubic)"
    model = load_model(pair_run / "run")
    assert model.role == "pair" and model.name == "rescale-ofa"
    deployed = deploy(model).module
    assert isinstance(deployed.upscaler, OFASubnet), "eval/export run the largest subnet, static"
    assert isinstance(load_supernet(pair_run / "run", pairs=True), SRPair)


@pytest.mark.slow
def test_a_supernet_pair_run_continues_from_a_trained_pair_downscaler_included(pair_run, tmp_path):
    """Longer training across sessions: a new run --init-from a finished pair run starts from its whole pair."""
    args = _pair_args(tmp_path / "more")
    args[args.index("--init-from") + 1] = str(pair_run / "ref")
    args[args.index("--phase-steps") + 1] = "0,0,0,1"
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    a, b = load_file(pair_run / "ref" / "model.safetensors"), load_file(tmp_path / "more" / "model.safetensors")
    moved = (a["downscaler.out.weight"] - b["downscaler.out.weight"]).abs().max()
    assert 0 < moved < 1e-3 < a["downscaler.out.weight"].abs().max(), "one small Adam step from the trained pair"


@pytest.mark.slow
@pytest.mark.extras("onnx")
def test_search_cuts_the_pairs_upscaler_scores_it_on_the_pairs_lr_and_writes_a_pair(pair_run, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    doc = {"model": synthetic_latency(32, 32).to_dict(),
           "check": {"n": 0, "spearman": 1.0, "mean_abs_error_ms": 0.0, "mean_rel_error": 0.0, "subnets": []}}
    (cache / f"latency_onnx_{run.device_id(None)}_32x32_t1_x2.json").write_text(json.dumps(doc))
    monkeypatch.setattr(run, "ACCURACY_SUBNETS", 6)
    spec = str(pair_run / "run")
    args = ["search", "--scale", "2", "--latency-ms", "1000", "--runtime", "onnx", "--input-size", "32x32",
            "--supernet", spec, "--cache", str(cache), "--no-progress"]
    r = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert "pair upscaler x2" in r.output and "its LR" in r.output
    meta = json.loads((tmp_path / "out" / "model.json").read_text())
    assert meta["model"] == "pair" and meta["config"]["upscaler"]["model"] == "ofa-subnet"
    assert meta["config"]["downscaler"]["model"] == "tad" and meta["measured"]["set5_lr_psnr"] > 30
    # the subnets were scored through the pair's own LR: not the figures of the same subnets on bicubic LR
    rows = json.loads(next(cache.glob("accuracy_*.json")).read_text())["subnets"]
    assert {r["arch"]["scale"] for r in rows} == {2}
    pair = load_supernet(spec, pairs=True)
    from mobile_sr.data.datasets import holdout_images
    from mobile_sr.models.ofa import Arch
    from mobile_sr.search.predictor import score

    images = holdout_images([SET5_HR], 10, 2)
    arch = Arch.from_dict(rows[0]["arch"])
    on_pair_lr = score(pair.upscaler, arch, images, pair.downscaler)
    assert rows[0]["psnr"] == pytest.approx(on_pair_lr, abs=1e-3)
    assert abs(score(pair.upscaler, arch, images) - on_pair_lr) > 1e-3
    # the result is a pair: its downscaler is the trained one, unchanged; it evaluates end to end
    cut = load_model(tmp_path / "out")
    assert cut.role == "pair" and isinstance(cut.upscaler, OFASubnet)
    assert all(torch.equal(v, pair.downscaler.state_dict()[k]) for k, v in cut.downscaler.state_dict().items())
    r = CliRunner().invoke(main, ["eval", "--model", str(tmp_path / "out"), "--pipeline", "learned"])
    assert r.exit_code == 0 and "LR PSNR" in r.output, r.output
    r = CliRunner().invoke(main, ["export", "--model", str(tmp_path / "out"), "--target", "onnx", "--input-size",
                                  "48x48", "-o", str(tmp_path / "exported")])
    assert r.exit_code == 0, r.output
    sidecar = json.loads(next((tmp_path / "exported").glob("*.onnx.json")).read_text())
    assert sidecar["verification"]["lr_source"] == "the pair's downscaler, rounded to 8 bits"
    # a pair is searched at its own scale only
    r = CliRunner().invoke(main, ["search", "--scale", "4", "--latency-ms", "1000", "--runtime", "onnx",
                                  "--input-size", "32x32", "--supernet", spec, "--cache", str(cache), "-o",
                                  str(tmp_path / "x4"), "--no-progress"])
    assert r.exit_code == 2 and r.stderr == f"error: {spec} is a x2 pair; search it with --scale 2\n", r.output
    assert not (tmp_path / "x4").exists()


def test_supernet_pair_training_refuses_the_plain_trainers_options(tmp_path):
    r = CliRunner().invoke(main, ["train", "--model", "rescale-ofa", "--data", SET5_HR, "--out", str(tmp_path / "r"),
                                  "--steps", "5", "--ema", "0.9"])
    assert r.exit_code == 2 and r.stderr.startswith("error: --steps, --ema: not an option of rescale-ofa"), r.output
    assert "--phase-steps" in r.stderr and len(r.stderr.splitlines()) == 1
    r = CliRunner().invoke(main, ["train", "--model", "rescale-ofa", "--data", SET5_HR, "--out", str(tmp_path / "r"),
                                  "--patch", "33"])
    assert r.exit_code == 2 and "divisible by the scale" in r.stderr
    assert not (tmp_path / "r").exists()


def test_a_supernet_pair_run_ships_with_the_command_that_reproduces_it():
    from dataclasses import asdict

    from mobile_sr.search.ship import train_command

    cfg = OFATrainConfig(data=["shared/T91"], out="runs/p", pair="rescale-ofa", scale=2, lr_patch=48,
                         steps={"full": 0, "kernel": 0, "depth": 0, "expand": 4000}, jpeg="70-95@0.5",
                         init_from="ofa-sr")
    line = train_command(asdict(cfg))
    assert line.startswith("mobile-sr train --model rescale-ofa --scale 2 --data shared/T91 --out runs/p "
                           "--phase-steps 0,0,0,4000 --batch 16 --patch 96 ")
    assert "--lambda 1.0 --jpeg 70-95@0.5" in line and "--init-from ofa-sr" in line
