"""The eval and models commands as a user types them."""

from __future__ import annotations

import json

import torch
from click.testing import CliRunner

from mobile_sr.cli import main
from mobile_sr.core.weights import write_weights
from mobile_sr.models import create_model


def test_eval_bicubic_prints_table_and_writes_json(tmp_path):
    out = tmp_path / "scores.json"
    r = CliRunner().invoke(main, ["eval", "--model", "bicubic", "--scale", "2", "--json", str(out)])
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert lines[0].startswith("bicubic on Set5 x2") and len(lines) == 2 + 5 + 1
    mean = float(lines[-1].split()[1])
    assert abs(mean - 33.67) < 0.05
    data = json.loads(out.read_text())
    assert len(data["images"]) == 5 and abs(data["mean_psnr"] - mean) < 0.01


def test_eval_checkpoint_takes_its_scale_and_tiles_identically(tmp_path):
    torch.manual_seed(0)
    m = create_model("elsr", 3, pretrained=False)
    write_weights(m, {"model": "elsr", "scale": 3, "config": m.config()}, tmp_path / "e.safetensors")
    full = CliRunner().invoke(main, ["eval", "--model", str(tmp_path / "e.safetensors")])
    tiled = CliRunner().invoke(main, ["eval", "--model", str(tmp_path / "e.safetensors"), "--tile", "40"])
    assert full.exit_code == 0 and "Set5 x3" in full.output
    assert full.output.splitlines()[-1] == tiled.output.splitlines()[-1]


def test_eval_errors_are_one_line(tmp_path):
    r = CliRunner().invoke(main, ["eval", "--model", "bicubic", "--dataset", "Set14"])
    assert r.exit_code == 2 and "only Set5 ships" in r.output
    r = CliRunner().invoke(main, ["eval", "--model", "bicubic", "--dataset", "Set5", "--data-root", str(tmp_path)])
    assert r.exit_code == 2 and "benchmark folder not found" in r.output


def test_models_table_lists_every_model():
    r = CliRunner().invoke(main, ["models"])
    assert r.exit_code == 0, r.output
    for name in ("fsrcnn", "fsrcnn-s", "elsr"):
        assert f"\n{name} " in r.output


def test_clicks_own_refusals_are_one_error_line_too(tmp_path):
    """Out-of-range values, unknown options and commands, missing arguments: one `error:` line, exit 2, as every
    other refusal (not click's three-line usage block), and nothing written."""
    cases = [(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--batch", "0"],
              "error: Invalid value for '--batch': 0 is not in the range x>=1. (see `"),
             (["eval", "--bogus"], "error: No such option '--bogus'."),
             (["frob"], "error: No such command 'frob'."),
             (["video", "encode"], "error: Missing argument 'SRC'."),
             (["search", "--scale", "3", "--latency-ms", "5"], "error: Invalid value for '--scale': '3' is not one of")]
    for args, start in cases:
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2 and r.stderr.startswith(start), (args, r.output)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.output, r.output
    assert list(tmp_path.iterdir()) == []
    r = CliRunner().invoke(main, ["--version"])
    assert r.exit_code == 0 and ", version " in r.output
