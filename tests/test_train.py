"""Training mechanics: bit-exact resume after SIGKILL, DDP under torchrun, refusals that protect runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
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


def _args(out: Path, steps: int, extra: tuple[str, ...] = (), data: str | Path = DATA) -> list[str]:
    return ["train", "--model", "fsrcnn", "--scale", "2", "--data", str(data), "--out", str(out), "--steps", str(steps),
            "--batch", "4", "--patch", "48", "--val-every", "0", "--ckpt-every", "10", "--threads", "1",
            "--warmup", "5", "--no-progress", *extra]


def _cli(args: list[str], env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "mobile_sr", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("extra", [(), ("--ema", "0.9"), pytest.param(("--qat", "--init-from", "fsrcnn"),
                                                                      marks=pytest.mark.extras("executorch"))],
                         ids=["plain", "ema", "qat"])
def test_resume_after_kill_is_bit_exact(tmp_path, kill_at_checkpoint, extra):
    """With --ema the average resumes too: the written weights are the average's, bit for bit. With --qat the
    activation fake-quantizers' observed ranges resume with the weights."""
    steps = 60
    ref = _cli(_args(tmp_path / "ref", steps, extra))
    kill_at_checkpoint(_args(tmp_path / "run", steps, extra), 30, tmp_path / "held")
    ckpt = tmp_path / "run" / "last.pt"
    assert torch.load(ckpt, weights_only=True)["step"] == 30
    assert not (tmp_path / "run" / "model.safetensors").exists()
    assert ref.wait(timeout=600) == 0, ref.stdout.read()
    resumed = _cli(_args(tmp_path / "run", steps, ("--resume", *extra)))
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


def test_a_finished_run_without_its_checkpoint_is_never_overwritten(tmp_path):
    """Issue 12 item 4: weights without last.pt (deleted to save space, or a copied run) used to be overwritten."""
    out = tmp_path / "run"
    assert CliRunner().invoke(main, _args(out, 3)).exit_code == 0
    (out / "last.pt").unlink()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    r = CliRunner().invoke(main, _args(out, 3))
    assert r.exit_code == 2, r.output
    assert r.stderr == (f"error: {out} is not empty (config.json, model.json, model.safetensors, ...) and has no "
                        "last.pt to resume; choose another --out, or delete it\n")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    other = tmp_path / "notes"
    other.mkdir()
    (other / "README.txt").write_text("mine")
    r = CliRunner().invoke(main, _args(other, 3))
    assert r.exit_code == 2 and "is not empty (README.txt)" in r.stderr
    assert sorted(p.name for p in other.iterdir()) == ["README.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert CliRunner().invoke(main, _args(empty, 1)).exit_code == 0, "an empty folder is a fine --out"


def _full_disk_at(monkeypatch: pytest.MonkeyPatch, name: str, nth: int) -> None:
    """From the ``nth`` atomic write of the file ``name`` on, its temporary file is backed by /dev/full: the write
    fails with the kernel's real ENOSPC, as on a full disk, after the temporary file was created."""
    real = tempfile.mkstemp
    seen = {"n": 0}

    def mkstemp(*args, **kwargs):
        fd, tmp = real(*args, **kwargs)
        if Path(tmp).name.startswith(f".{name}."):
            seen["n"] += 1
            if seen["n"] >= nth:
                os.close(fd)
                fd = os.open("/dev/full", os.O_WRONLY)
        return fd, tmp

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


@pytest.mark.parametrize("name,nth,kept", [
    ("config.json", 1, ""),  # before any training: nothing to keep
    ("last.pt", 1, "; no checkpoint was written yet"),
    ("last.pt", 2, "; the previous checkpoint (step 5) is kept"),
    ("model.safetensors", 1, "; the previous checkpoint (step 10) is kept"),
    ("model.json", 1, "; the previous checkpoint (step 10) is kept"),
])
def test_a_full_disk_is_one_line_naming_the_file_and_keeps_the_checkpoint(tmp_path, monkeypatch, name, nth, kept):
    """Issue 12 item 8: ENOSPC while writing a run file is one `error:` line (exit 1), never a traceback; the
    checkpoint on disk stays loadable and resumes."""
    out = tmp_path / "run"
    args = [*_args(out, 10), "--ckpt-every", "5"]
    with monkeypatch.context() as m:
        _full_disk_at(m, name, nth)
        r = CliRunner().invoke(main, args)
    assert r.exit_code == 1, r.output
    assert r.stderr == f"error: cannot write {out / name}: No space left on device{kept}\n"
    assert not [p.name for p in out.glob(".*")], "a temporary file was left behind"
    if "step" not in kept:
        assert not (out / "last.pt").exists()
        return
    assert torch.load(out / "last.pt", weights_only=True)["step"] == (5 if name == "last.pt" else 10)
    r = CliRunner().invoke(main, [*args, "--resume"])
    assert r.exit_code == 0, r.output
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 10
    assert load_file(out / "model.safetensors").keys() and (out / "model.json").exists()


def test_out_that_cannot_be_written_is_refused_before_any_work(tmp_path, monkeypatch):
    """Issue 12 item 8: a read-only folder (or a file) above --out is refused up front, with exit code 2."""
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    if os.geteuid() == 0:  # root writes into a 0555 folder: make its writes fail as everyone else's do
        real = tempfile.mkstemp

        def mkstemp(*args, **kwargs):
            if Path(kwargs.get("dir", "")) == ro:
                raise PermissionError(13, "Permission denied")
            return real(*args, **kwargs)

        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    r = CliRunner().invoke(main, _args(ro / "run", 3))
    assert r.exit_code == 2, r.output
    assert r.stderr == f"error: {ro}: the folder of --out {ro / 'run'} is not writable (Permission denied)\n"
    assert list(ro.iterdir()) == []
    (tmp_path / "file").write_text("")
    r = CliRunner().invoke(main, _args(tmp_path / "file" / "run", 3))
    assert r.exit_code == 2
    assert r.stderr == f"error: --out {tmp_path / 'file' / 'run'}: {tmp_path / 'file'} is a file, not a folder\n"


def test_an_unreadable_training_image_is_skipped_with_a_warning_naming_it(tmp_path):
    """Issue 12 item 9: a truncated PNG and a text file named .png are skipped, each named on one warning line;
    the rest trains. A folder of nothing but such files is one error line."""
    data = tmp_path / "data"
    data.mkdir()
    for p in Path(DATA).iterdir():
        (data / p.name).write_bytes(p.read_bytes())
    whole = (data / "img_001.png").read_bytes()
    (data / "img_000_truncated.png").write_bytes(whole[: len(whole) // 2])
    (data / "notes.png").write_text("not a picture")
    r = CliRunner().invoke(main, _args(tmp_path / "run", 2, data=data))
    assert r.exit_code == 0, r.output
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2 and r.stderr.count("\n") == 2, r.stderr
    assert warnings[0].startswith(f"warning: skipping training image {data / 'img_000_truncated.png'}: ")
    assert warnings[1].startswith(f"warning: skipping training image {data / 'notes.png'}: not an image file")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(whole[:100])
    r = CliRunner().invoke(main, _args(tmp_path / "run2", 2, data=bad))
    assert r.exit_code == 2 and r.stderr.splitlines()[-1].startswith("error: no training image is at least")
    assert "(1 unreadable, skipped)" in r.stderr and not (tmp_path / "run2").exists()


@pytest.mark.slow
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


def test_ema_writes_the_average_and_keeps_the_raw_weights_to_resume(tmp_path):
    out = tmp_path / "run"
    r = CliRunner().invoke(main, _args(out, 6, ("--ema", "0.5", "--val-every", "3")))
    assert r.exit_code == 0, r.output
    ckpt = torch.load(out / "last.pt", weights_only=True)
    final, best = load_file(out / "model.safetensors"), load_file(out / "best.safetensors")
    ema = {k.removeprefix("module."): v for k, v in ckpt["ema"].items() if k.startswith("module.")}
    assert final.keys() <= ema.keys() and all(torch.equal(final[k], ema[k]) for k in final)
    assert any(not torch.equal(final[k], ckpt["model"][k]) for k in final)  # not the raw weights
    assert best.keys() == final.keys()
    # The average is its own state: resuming under another decay would silently mix two averages.
    again = CliRunner().invoke(main, _args(out, 8, ("--resume", "--ema", "0.9")))
    assert again.exit_code == 2 and "error: --resume: ema differs" in again.output, again.output


@pytest.mark.parametrize("model,extra,flag", [
    ("ofa-sr", ("--steps", "10"), "--steps"),
    ("ofa-sr", ("--scale", "4"), "--scale"),
    ("ofa-sr", ("--loss", "charbonnier", "--tail-lr-scale", "1"), "--tail-lr-scale, --loss"),
    ("fsrcnn", ("--phase-steps", "1,1,1,1"), "--phase-steps"),
    ("elsr", ("--shrink-lr", "1e-4", "--subnets", "3"), "--shrink-lr, --subnets"),
    ("ofa-sr", ("--ema", "0.999"), "--ema"),
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


def test_ship_records_the_init_from_chain_and_refuses_a_corrupt_checkpoint(tmp_path):
    """A stage fine-tuned from a checkpoint (last.pt) or from the weights a finished run wrote (model.safetensors)
    is recorded with the runs it came from, and their steps are counted."""
    from mobile_sr.models import ModelError
    from mobile_sr.train.ship import _stages

    first, second, third = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert CliRunner().invoke(main, _args(first, 3)).exit_code == 0
    assert CliRunner().invoke(main, _args(second, 2, ("--init-from", str(first / "last.pt")))).exit_code == 0
    assert CliRunner().invoke(main, _args(third, 4, ("--init-from", str(second / "model.safetensors")))).exit_code == 0
    cfg = json.loads((second / "config.json").read_text())
    stages, steps, seconds, root = _stages(cfg)
    assert root is None  # the chain started from scratch
    assert len(stages) == 2 and "--steps 3" in stages[0] and "--steps 2" in stages[1]
    assert "--init-from " in stages[1] and "/a/last.pt" in stages[1]  # paths as relative as where it ran
    assert steps == 3 and seconds > 0  # the earlier run's; the caller adds this run's own
    stages, steps, _, _ = _stages(json.loads((third / "config.json").read_text()))
    assert [s.split("--steps ")[1].split()[0] for s in stages] == ["3", "2", "4"] and steps == 5
    assert "/b/model.safetensors" in stages[2]
    (first / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read checkpoint"):
        _stages(cfg)


def test_a_subnet_fine_tuned_in_two_runs_keeps_its_cut_record(tmp_path, monkeypatch, shared_benchmark):
    """A searched subnet's fine-tune may span sessions (each run --init-from the last): the shipped manifest still
    starts with the search command and keeps the cut's arch and latencies, then lists every training run: those
    that made the shipped weights it started from (``--init-from ofa-s``), then the two new ones."""
    from mobile_sr.models import manifest
    from mobile_sr.train import ship

    def subnet_args(out: Path, extra: tuple[str, ...]) -> list[str]:
        args = _args(out, 2, extra)
        args[args.index("fsrcnn")] = "ofa-s"
        return args

    first, second = tmp_path / "a", tmp_path / "b"
    assert CliRunner().invoke(main, subnet_args(first, ("--init-from", "ofa-s"))).exit_code == 0
    assert CliRunner().invoke(main, subnet_args(second, ("--init-from", str(first / "model.safetensors")))).exit_code == 0
    monkeypatch.setattr(ship, "WEIGHTS_DIR", tmp_path / "weights")  # never over the shipped weights
    man = json.loads(ship.ship(second, shared_benchmark).with_suffix(".json").read_text())
    shipped = manifest("ofa-s", 2)
    search, *trains = man["command"]
    assert search == shipped["command"][0] and search.startswith("mobile-sr search --scale 2")
    earlier = shipped["command"][1:] if isinstance(shipped["command"], list) else []
    assert trains[: len(earlier)] == earlier and len(trains) == len(earlier) + 2
    assert "--init-from ofa-s" in trains[-2] and "/a/model.safetensors" in trains[-1]
    assert man["arch"] == shipped["arch"] and man["measured"] == shipped["measured"]
    assert man["steps"] == (shipped["steps"] if earlier else 0) + 4


def test_a_cut_fine_tuned_with_the_direct_x4_tail_keeps_its_body_and_says_its_tail_is_new(tmp_path, monkeypatch,
                                                                                           shared_benchmark):
    """``--arch tail=direct`` on an x4 cut (how ofa-m x4 was made): the body starts from the shipped weights, the new
    one-shuffle tail from nearest-neighbour upscaling; the manifest's command has the flag and says that the search's
    latencies are the cut's. A value that is no word, or of the wrong kind, is one ``error:`` line."""
    from mobile_sr.models import create_model, load_model
    from mobile_sr.train import ship

    def args(out: Path, *extra: str) -> list[str]:
        a = _args(out, 2, ("--init-from", "ofa-s", *extra))
        a[a.index("fsrcnn")], a[a.index("--scale") + 1], a[a.index("--patch") + 1] = "ofa-s", "4", "64"
        return a

    run = tmp_path / "a"
    r = CliRunner().invoke(main, args(run, "--arch", "tail=direct", "--lr", "1e-9"))
    assert r.exit_code == 0, r.output
    trained, shipped = load_model(run).module, create_model("ofa-s", 4)
    assert trained.config()["tail"] == "direct" and not trained.upsampler.stages
    assert torch.allclose(trained.blocks[0].project.weight, shipped.blocks[0].project.weight, atol=1e-6)
    monkeypatch.setattr(ship, "WEIGHTS_DIR", tmp_path / "weights")
    man = json.loads(ship.ship(run, shared_benchmark).with_suffix(".json").read_text())
    assert "--arch tail=direct" in man["command"][-1] and "not this graph's" in man["tail"]
    assert man["config"]["tail"] == "direct"
    for bad, says in (("tail=a-b", "expected KEY=INT or KEY=WORD"), ("tail=staging", "tail must be one of"),
                      ("width=wide", "a value of the wrong kind")):
        r = CliRunner().invoke(main, args(tmp_path / bad, "--arch", bad))
        assert r.exit_code == 2 and says in r.output and r.output.count("\n") == 1, r.output
        assert not (tmp_path / bad).exists()


def test_a_variant_without_settings_takes_its_sources_and_a_shipped_model_keeps_its_own(tmp_path, monkeypatch):
    """``train --model ofa-m-h264 --init-from ofa-m`` (a new name for the same network, trained on other data) must
    build ofa-m's graph: a model with no defaults and no manifest of its own takes its source's settings. One that has
    a manifest keeps its own graph and takes the weights that fit (``--model ofa-m --init-from ofa-s``)."""
    from mobile_sr.models import MODELS, ModelInfo, create_model, load_model
    from mobile_sr.models.ofa import OFASubnet

    monkeypatch.setitem(MODELS, "ofa-variant", ModelInfo("ofa-variant", "upscaler", OFASubnet, "a test variant"))

    def run(name: str, out: Path, *extra: str) -> dict:
        a = _args(out, 1, ("--init-from", "ofa-s", "--lr", "1e-9", *extra))
        a[a.index("fsrcnn")] = name
        r = CliRunner().invoke(main, a)
        assert r.exit_code == 0, r.output
        return load_model(out).module.config()

    ofa_s, ofa_m = create_model("ofa-s", 2).config(), create_model("ofa-m", 2).config()
    assert ofa_s != ofa_m
    assert run("ofa-variant", tmp_path / "v") == ofa_s
    assert run("ofa-variant", tmp_path / "r", "--arch", "rep=1") == {**ofa_s, "rep": 1}
    assert run("ofa-m", tmp_path / "m") == ofa_m


def test_a_fine_tune_of_shipped_weights_keeps_their_record(tmp_path, monkeypatch, shared_benchmark):
    """Training on from the shipped weights (``--init-from NAME``): the new manifest lists the shipped commands first,
    then the new run, and counts the shipped steps and minutes too, so the record still reproduces the weights."""
    from mobile_sr.models import manifest
    from mobile_sr.train import ship

    run = tmp_path / "a"
    assert CliRunner().invoke(main, _args(run, 2, ("--init-from", "fsrcnn"))).exit_code == 0
    monkeypatch.setattr(ship, "WEIGHTS_DIR", tmp_path / "weights")  # never over the shipped weights
    man = json.loads(ship.ship(run, shared_benchmark).with_suffix(".json").read_text())
    shipped = manifest("fsrcnn", 2)
    before = shipped["command"] if isinstance(shipped["command"], list) else [shipped["command"]]
    assert man["command"][:-1] == before and "--init-from fsrcnn" in man["command"][-1]
    assert man["steps"] == shipped["steps"] + 2 and man["wall_minutes"] >= shipped["wall_minutes"]
