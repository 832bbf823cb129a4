"""Specialization: the evolution respects the budget and is deterministic, the latency and accuracy models
are scored honestly, and a searched subnet goes through eval and every export target."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from click.testing import CliRunner

from mobile_sr.cli import main
from mobile_sr.core.weights import write_weights
from mobile_sr.models import load_model
from mobile_sr.models.ofa import OFASR, OFASubnet, largest, sample, smallest
from mobile_sr.search import latency as latency_mod
from mobile_sr.search import predictor, run
from mobile_sr.search.evolution import BudgetError, EvolutionConfig, evolve
from mobile_sr.search.latency import arch_layers, spearman

from .conftest import REPO, synthetic_latency

SET5_HR = REPO / "mobile_sr" / "assets" / "benchmark" / "Set5" / "x2" / "HR"


def toy_accuracy(archs):
    """Bigger is better, with diminishing returns and a preference for k=5: something to optimise."""
    out = []
    for a in archs:
        slots = a.active_slots()
        out.append(30 + sum(np.log(a.expand[i]) + (0.3 if a.kernel[i] == 5 else 0.1 * a.kernel[i] / 7)
                            for i in slots))
    return np.array(out)


FAST = EvolutionConfig(population=40, generations=12)


@pytest.mark.parametrize("scale", [2, 4])
def test_search_respects_the_budget_and_beats_random_sampling(scale):
    lat = synthetic_latency()
    lo, hi = lat.predict(smallest(scale)), lat.predict(largest(scale))
    budget = lo + 0.4 * (hi - lo)
    arch, acc, ms, history = evolve(scale, budget, lat.predict, toy_accuracy, seed=3, cfg=FAST)
    assert arch.scale == scale and ms <= budget and lat.predict(arch) == ms
    assert history == sorted(history), "the best score never goes down"
    rng = random.Random(0)
    feasible = [a for a in (sample(rng, scale) for _ in range(3000)) if lat.predict(a) <= budget]
    assert len(feasible) > 50
    assert acc >= np.percentile(toy_accuracy(feasible), 99), "evolution did no better than random sampling"


def test_search_is_deterministic_for_a_seed_and_refuses_impossible_budgets():
    lat = synthetic_latency()
    budget = lat.predict(smallest(2)) * 2
    a = evolve(2, budget, lat.predict, toy_accuracy, seed=7, cfg=FAST)
    b = evolve(2, budget, lat.predict, toy_accuracy, seed=7, cfg=FAST)
    assert a == b
    c = evolve(2, budget, lat.predict, toy_accuracy, seed=8, cfg=FAST)
    assert c[2] <= budget
    with pytest.raises(BudgetError, match="smallest is predicted"):
        evolve(2, lat.predict(smallest(2)) * 0.9, lat.predict, toy_accuracy, seed=0, cfg=FAST)


def test_layer_list_matches_the_subnet_convolutions():
    net = OFASR()
    for arch in (largest(4), smallest(2), sample(random.Random(1), 4)):
        sub = net.get_subnet(arch)
        convs = [m for m in sub.modules() if m.__class__.__name__ == "Conv2d"]
        layers = arch_layers(arch, 16, 16)
        # every learned conv, plus the fixed anchor conv(s) the upsampler runs as F.conv2d
        assert len(layers) == len(convs) + arch.scale.bit_length() - 1
        assert sorted(c.kernel_size[0] for c in convs) == sorted(x.kernel for x in layers if x.in_channels != 3
                                                                 or x.out_channels != 12)


def test_spearman_and_predictor_report_real_errors():
    assert spearman(np.array([1, 2, 3, 4.0]), np.array([10, 20, 30, 40.0])) == pytest.approx(1.0)
    assert spearman(np.array([1, 2, 3, 4.0]), np.array([4, 3, 2, 1.0])) == pytest.approx(-1.0)
    rng = random.Random(0)
    archs = {sample(rng, s) for s in (2, 4) for _ in range(150)}
    # x4 as in a real supernet: 5 dB lower and its subnets 20x closer together; still to be ranked right
    rows = [{"arch": a.to_dict(), "psnr": float(toy_accuracy([a])[0]) * (0.05 if a.scale == 4 else 1.0)
             - 5 * (a.scale == 4)} for a in archs]
    rep = predictor.holdout_error(rows, seed=0)
    assert rep["test"] >= 50 and rep["mae_db"] < 0.15 and rep["x2"]["spearman"] > 0.9
    assert rep["x4"]["spearman"] > 0.9 and rep["x4"]["mae_db"] < 0.01
    shuffled = [dict(r, psnr=p) for r, p in zip(rows, random.Random(1).sample([r["psnr"] for r in rows], len(rows)),
                                                 strict=True)]
    assert predictor.holdout_error(shuffled, seed=0)["x2"]["spearman"] < 0.5, "the error report must see noise"


def _supernet_run(folder):
    """A random supernet saved as `train --model ofa-sr` saves it, with Set5 HR as its 'training' folder."""
    net = OFASR()
    folder.mkdir()
    write_weights(net, {"model": "ofa-sr", "scale": 2, "config": net.config()}, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({"data": [str(SET5_HR)], "holdout_every": 2}))
    return folder


def _no_long_work(monkeypatch):
    """Make every long step of a search (the layer table, scoring subnets, fitting the predictor) fail loudly."""
    def forbidden(*args, **kwargs):
        raise AssertionError("a refused budget must not reach the long steps of a search")

    monkeypatch.setattr(latency_mod, "measure_layers", forbidden)
    monkeypatch.setattr(run.acc, "collect", forbidden)
    monkeypatch.setattr(run.acc, "holdout_error", forbidden)
    monkeypatch.setattr(run.acc, "fit", forbidden)


@pytest.mark.parametrize("value", ["nan", "inf", "NaN"])
def test_a_budget_that_is_not_a_number_is_refused_at_once(tmp_path, value):
    """Issue 12 item 10: `--latency-ms nan` ran 4 minutes and wrote NaN into search.json."""
    r = CliRunner().invoke(main, ["search", "--scale", "2", "--latency-ms", value, "-o", str(tmp_path / "x")])
    assert r.exit_code == 2
    assert r.stderr == (f"error: --latency-ms {float(value)}: the budget must be a finite number of milliseconds "
                        "> 0\n")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(run.SearchError, match="must be a number of milliseconds > 0"):
        run.search(supernet_spec="ofa-sr", scale=2, budget_ms=float(value), runtime="onnx", plan=None, threads=1,
                   size=(32, 32), out=tmp_path / "y", cache_dir=tmp_path / "cache")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.extras("onnx")
def test_an_impossible_budget_on_a_cold_cache_is_refused_after_one_measurement(tmp_path, monkeypatch):
    """Issue 12 item 10: on a cold cache only the smallest subnet is measured (seconds) before the refusal, never
    the layer table or the predictor; the figure it gives is a real measurement."""
    supernet = _supernet_run(tmp_path / "supernet")
    _no_long_work(monkeypatch)
    r = CliRunner().invoke(main, ["search", "--scale", "2", "--latency-ms", "0.001", "--runtime", "onnx",
                                  "--input-size", "32x32", "--supernet", str(supernet), "--cache",
                                  str(tmp_path / "cache"), "-o", str(tmp_path / "out"), "--no-progress"])
    assert r.exit_code == 2, r.output
    line = r.stderr.splitlines()[-1]
    assert line.startswith("error: no x2 subnet fits 0.001 ms: the smallest measures ") and line.endswith(
        " ms on this runtime and device"), r.stderr
    assert float(line.split("measures ")[1].split(" ms")[0]) > 0.001
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("cache/latency_*")), "nothing is cached"


def test_an_impossible_budget_on_a_warm_cache_is_refused_before_the_predictor(tmp_path, monkeypatch):
    """Issue 12 item 10: with the latency model cached, the refusal costs nothing (it used to come after 62 s of
    predictor fitting)."""
    supernet = _supernet_run(tmp_path / "supernet")
    cache = tmp_path / "cache"
    cache.mkdir()
    model = synthetic_latency(32, 32)
    doc = {"model": model.to_dict(), "check": {"n": 0, "spearman": 1.0, "mean_abs_error_ms": 0.0,
                                               "mean_rel_error": 0.0, "subnets": []}}
    (cache / f"latency_onnx_{run.device_id(None)}_32x32_t1_x2.json").write_text(json.dumps(doc))
    _no_long_work(monkeypatch)
    monkeypatch.setattr(latency_mod, "measure_subnet", lambda *a, **k: pytest.fail("measured with a warm cache"))
    r = CliRunner().invoke(main, ["search", "--scale", "2", "--latency-ms", "0.5", "--runtime", "onnx",
                                  "--input-size", "32x32", "--supernet", str(supernet), "--cache", str(cache),
                                  "-o", str(tmp_path / "out"), "--no-progress"])
    assert r.exit_code == 2, r.output
    floor = model.predict(smallest(2))
    assert r.stderr == (f"error: no x2 subnet fits 0.5 ms: the smallest is predicted at {floor:.2f} ms on this "
                        "runtime and device\n")
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A full ``mobile-sr search`` (ONNX Runtime, 32x32) on a random supernet with Set5 HR as its 'training'
    folder, fewer scored subnets than the default to stay fast."""
    tmp = tmp_path_factory.mktemp("search")
    net = OFASR()
    run_dir = tmp / "supernet"
    run_dir.mkdir()
    write_weights(net, {"model": "ofa-sr", "scale": 2, "config": net.config()}, run_dir / "model.safetensors")
    (run_dir / "config.json").write_text(json.dumps({"data": [str(SET5_HR)], "holdout_every": 2}))
    mp = pytest.MonkeyPatch()
    mp.setattr(run, "ACCURACY_SUBNETS", 12)
    args = ["search", "--scale", "2", "--latency-ms", "1000", "--runtime", "onnx", "--input-size", "32x32",
            "--supernet", str(run_dir), "--cache", str(tmp / "cache"), "-o", str(tmp / "out"), "--no-progress"]
    try:
        r = CliRunner().invoke(main, args)
        again = CliRunner().invoke(main, [*args[:-2], str(tmp / "out2"), "--no-progress"])
    finally:
        mp.undo()
    return tmp, r, again


@pytest.mark.slow
@pytest.mark.extras("onnx")
def test_search_cli_writes_a_loadable_subnet_with_its_figures(searched):
    tmp, r, again = searched
    assert r.exit_code == 0, r.output
    assert "Spearman" in r.output and "held-out subnets" in r.output
    meta = json.loads((tmp / "out" / "model.json").read_text())
    assert meta["model"] == "ofa-subnet" and meta["measured"]["latency_ms"] > 0
    assert meta["predicted"]["latency_ms"] <= 1000
    report = json.loads((tmp / "out" / "search.json").read_text())
    assert report["latency_model_check"]["n"] >= 20 and len(report["latency_check_subnets"]) >= 20
    assert report["predictor"]["test"] >= 1
    sub = load_model(tmp / "out").module
    assert isinstance(sub, OFASubnet) and sub.config() == meta["config"]
    # the cache makes a second search skip every measurement, and the same seed gives the same subnet
    assert again.exit_code == 0, again.output
    assert "measuring" not in again.output and "scoring" not in again.output
    assert json.loads((tmp / "out2" / "model.json").read_text())["arch"] == meta["arch"]


@pytest.mark.slow
@pytest.mark.extras("onnx")
def test_search_refuses_bad_input_without_writing(searched, tmp_path):
    tmp = searched[0]

    def search(*extra: str, supernet: str = str(tmp / "supernet")):
        return CliRunner().invoke(main, ["search", "--scale", "2", "--runtime", "onnx", "--input-size", "32x32",
                                         "--supernet", supernet, "--cache", str(tmp / "cache"), "--no-progress",
                                         *extra])

    r = search("--latency-ms", "0.0001", "-o", str(tmp_path / "x"))
    assert r.exit_code == 2 and "smallest is predicted" in r.output, r.output
    assert not (tmp_path / "x").exists()
    r = search("--latency-ms", "1000", "-o", str(tmp / "out"))
    assert r.exit_code == 2 and "not empty" in r.output
    r = search("--latency-ms", "5", "-o", str(tmp_path / "y"), supernet=str(tmp_path))
    assert r.exit_code == 2 and "no supernet checkpoint" in r.output
    r = search("--latency-ms", "5", "--device", "adb")
    assert r.exit_code == 2 and "--binary" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a refused search wrote something"


@pytest.mark.slow
@pytest.mark.extras("onnx", "tflite", "executorch", "coreml")
def test_searched_subnet_evaluates_and_exports_to_every_target(searched, tmp_path):
    tmp = searched[0]
    r = CliRunner().invoke(main, ["eval", "--model", str(tmp / "out")])
    assert r.exit_code == 0 and "Set5" in r.output, r.output
    r = CliRunner().invoke(main, ["export", "--model", str(tmp / "out"), "--target", "all", "--input-size", "48x48",
                                  "-o", str(tmp_path)])
    assert r.exit_code == 0, r.output
    made = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".json"))
    assert made == ["ofa-subnet_x2_48x48_fp16.mlpackage", "ofa-subnet_x2_48x48_fp32.onnx",
                    "ofa-subnet_x2_48x48_fp32.pte", "ofa-subnet_x2_48x48_fp32.tflite"], made


def test_ship_records_every_run_of_an_init_from_chain(tmp_path, monkeypatch):
    """A supernet continued with --init-from ships with both commands, summed time and one step axis."""
    from mobile_sr.search.ship import _history, run_chain, train_command
    from mobile_sr.train.ofa import OFATrainConfig

    monkeypatch.chdir(tmp_path)
    runs = [("runs/a", None, 0, 100), ("runs/b", "runs/a", 1, 50)]
    for out, init, seed, steps in runs:
        cfg = OFATrainConfig(data=["shared/T91"], out=out, seed=seed, init_from=init)
        (tmp_path / out).mkdir(parents=True)
        (tmp_path / out / "config.json").write_text(json.dumps(cfg.__dict__))
        summary = {"step": steps, "train_seconds": 60.0, "history": [{"step": steps, "largest_x2": 31.0}]}
        (tmp_path / out / "summary.json").write_text(json.dumps(summary))
    chain = run_chain(tmp_path / "runs/b")
    commands = [train_command(cfg) for cfg, _ in chain]
    assert "--init-from" not in commands[0] and "--seed" not in commands[0]
    assert commands[1].endswith("--seed 1 --init-from runs/a --val-every 1000")
    assert [h["step"] for h in _history(chain)] == [100, 150]
    (tmp_path / "runs/a/config.json").unlink()
    with pytest.raises(FileNotFoundError, match="runs/a"):
        run_chain(tmp_path / "runs/b")
