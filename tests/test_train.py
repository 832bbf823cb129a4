"""Training mechanics: bit-exact resume after SIGKILL, DDP under torchrun, refusals that protect runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from mobile_sr.cli import main
from mobile_sr.train.trainer import TrainConfig, lr_at

from .conftest import REPO

# Set5 HR images are the only images inside the package; these tests check mechanics, not quality.
DATA = str(REPO / "mobile_sr" / "assets" / "benchmark" / "Set5" / "x2" / "HR")


def _args(out: Path, steps: int, extra: tuple[str, ...] = ()) -> list[str]:
    return ["train", "--model", "fsrcnn", "--scale", "2", "--data", DATA, "--out", str(out), "--steps", str(steps),
            "--batch", "4", "--patch", "48", "--val-every", "0", "--ckpt-every", "10", "--threads", "1",
            "--warmup", "5", "--no-progress", *extra]


def _cli(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "mobile_sr", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def test_resume_after_kill_is_bit_exact(tmp_path):
    steps = 300
    ref = _cli(_args(tmp_path / "ref", steps))
    run = _cli(_args(tmp_path / "run", steps))
    ckpt = tmp_path / "run" / "last.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and run.poll() is None:
        time.sleep(0.02)
    run.send_signal(signal.SIGKILL)
    run.wait()
    killed_at = torch.load(ckpt, weights_only=True)["step"]
    assert 0 < killed_at < steps, "the run was not killed mid-training"
    assert not (tmp_path / "run" / "model.safetensors").exists()
    assert ref.wait(timeout=600) == 0, ref.stdout.read()
    resumed = _cli(_args(tmp_path / "run", steps, ("--resume",)))
    assert resumed.wait(timeout=600) == 0, resumed.stdout.read()
    a = load_file(tmp_path / "ref" / "model.safetensors")
    b = load_file(tmp_path / "run" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    oa = torch.load(tmp_path / "ref" / "last.pt", weights_only=True)["optimizer"]
    ob = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["optimizer"]
    assert all(torch.equal(oa["state"][i]["exp_avg_sq"], ob["state"][i]["exp_avg_sq"]) for i in oa["state"])


def test_existing_run_is_never_overwritten(tmp_path):
    out = tmp_path / "run"
    r = CliRunner().invoke(main, _args(out, 3))
    assert r.exit_code == 0, r.output
    before = (out / "last.pt").read_bytes()
    r = CliRunner().invoke(main, _args(out, 3))
    assert r.exit_code == 2 and "pass --resume" in r.output
    assert (out / "last.pt").read_bytes() == before
    r = CliRunner().invoke(main, _args(tmp_path / "other", 3, ("--resume",)))
    assert r.exit_code == 2 and "no checkpoint" in r.output
    r = CliRunner().invoke(main, [*_args(tmp_path / "x", 3)[:-1], "--model", "nope"])
    assert r.exit_code == 2 and "unknown model" in r.output


def test_ddp_two_processes_match_one_process(tmp_path):
    """gloo DDP with the global batch split across 2 ranks trains the same weights as 1 process."""
    steps = 8
    one = _cli(_args(tmp_path / "one", steps))
    assert one.wait(timeout=600) == 0, one.stdout.read()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "mobile_sr",
         *_args(tmp_path / "two", steps)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert ddp.returncode == 0, ddp.stdout + ddp.stderr
    a = load_file(tmp_path / "one" / "model.safetensors")
    b = load_file(tmp_path / "two" / "model.safetensors")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), (k, (a[k] - b[k]).abs().max())
    assert torch.load(tmp_path / "two" / "last.pt", weights_only=True)["step"] == steps


def test_cosine_schedule_shape():
    cfg = TrainConfig(model="fsrcnn", scale=2, data=[], out="", steps=1000, lr=1e-3, warmup=100, min_lr_ratio=0.01)
    assert lr_at(cfg, 0) == pytest.approx(1e-5)
    assert lr_at(cfg, 99) == pytest.approx(1e-3)
    assert lr_at(cfg, 550) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5))
    assert lr_at(cfg, 999) == pytest.approx(1e-5, rel=1e-3)


@pytest.mark.parametrize("model,extra,flag", [
    ("ofa-sr", ("--steps", "10"), "--steps"),
    ("ofa-sr", ("--scale", "4"), "--scale"),
    ("ofa-sr", ("--loss", "charbonnier", "--arch", "width=8"), "--loss, --arch"),
    ("fsrcnn", ("--phase-steps", "1,1,1,1"), "--phase-steps"),
    ("elsr", ("--shrink-lr", "1e-4", "--subnets", "3"), "--shrink-lr, --subnets"),
])
def test_an_option_of_the_other_trainer_is_refused_not_ignored(tmp_path, model, extra, flag):
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", "--model", model, "--data", DATA, "--out", str(out), *extra])
    assert r.exit_code == 2 and r.output.startswith(f"error: {flag}: not an option of"), r.output
    assert not out.exists()


def test_both_trainers_share_one_schedule():
    from mobile_sr.train.ofa import OFATrainConfig
    from mobile_sr.train.schedule import warmup_cosine

    cfg = OFATrainConfig(data=[], out="", steps={"full": 100, "kernel": 50, "depth": 0, "expand": 30},
                         lr={"full": 2e-3, "kernel": 5e-4, "depth": 5e-4, "expand": 1e-4}, warmup=20)
    # each phase restarts the schedule: warm-up of at most a tenth of the phase, then cosine to its floor
    assert cfg.lr_at(0) == warmup_cosine(0, 100, 2e-3, 10, cfg.min_lr_ratio) == pytest.approx(2e-4)
    assert cfg.lr_at(100) == warmup_cosine(0, 50, 5e-4, 5, cfg.min_lr_ratio) == pytest.approx(1e-4)
    assert cfg.lr_at(179) == pytest.approx(warmup_cosine(29, 30, 1e-4, 3, cfg.min_lr_ratio))
    plain = TrainConfig(model="fsrcnn", scale=2, data=[], out="", steps=100, lr=2e-3, warmup=10)
    assert [lr_at(plain, s) for s in range(100)] == [cfg.lr_at(s) for s in range(100)]
