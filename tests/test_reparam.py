"""Re-parameterised training (models/reparam.py): ``deploy`` folds every multi-branch convolution into one plain
convolution, exactly, so that the exported graph of a re-parameterised model is that of the plain model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mobile_sr.core.weights import write_weights
from mobile_sr.models import create_model, load_model
from mobile_sr.models.deploy import deploy_module, profile
from mobile_sr.models.reparam import RepConv, reparameterize


def _randomise(module: nn.Module) -> nn.Module:
    """Non-trivial values in every branch (the init leaves the edge scales near zero)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.3)
    return module


@pytest.mark.parametrize("cin,cout,kernel", [(3, 16, 3), (16, 16, 3), (16, 12, 3), (6, 6, 5), (4, 4, 1), (16, 48, 3)])
@pytest.mark.parametrize("size", [(9, 7), (1, 5), (3, 3)])
def test_folded_convolution_equals_the_sum_of_branches(cin, cout, kernel, size):
    """Borders included: the two-layer branches pad before their 1x1, so the border holds its bias, as the fold
    assumes; a 1-pixel-high input is all border."""
    rep = _randomise(RepConv(cin, cout, kernel).double())
    x = torch.randn(2, cin, *size, dtype=torch.float64)
    with torch.no_grad():
        ref, folded = rep(x), rep.fold()
        assert isinstance(folded, nn.Conv2d) and folded.kernel_size == (kernel, kernel)
        assert (folded(x) - ref).abs().max() < 1e-10


def test_every_branch_contributes():
    """A fold that dropped a branch would still pass with that branch at zero: zero each one in turn and check
    the output moves (so each is really in forward and in fold)."""
    rep = _randomise(RepConv(8, 8, 3).double())
    x = torch.randn(1, 8, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        full = rep(x)
        for name in ("kxk", "pw", "expand_out", *(f"edge_in.{i}" for i in range(3))):
            trimmed = _randomise(RepConv(8, 8, 3).double())
            trimmed.load_state_dict(rep.state_dict())
            trimmed.get_submodule(name).weight.zero_()
            trimmed.get_submodule(name).bias.zero_()
            assert (trimmed(x) - full).abs().max() > 1e-3, name
            assert (trimmed.fold()(x) - trimmed(x)).abs().max() < 1e-10, name


def test_rep_elsr_deploys_to_exactly_the_plain_elsr_graph():
    rep = _randomise(create_model("elsr", 2, pretrained=False, rep=1)).eval()
    plain = create_model("elsr", 2, pretrained=False)
    before = {k: v.clone() for k, v in rep.state_dict().items()}
    deployed = deploy_module(rep)
    assert not any(isinstance(m, RepConv) for m in deployed.modules())
    assert all(torch.equal(v, before[k]) for k, v in rep.state_dict().items())  # the trained module keeps its form
    shapes = {k: v.shape for k, v in deployed.state_dict().items()}
    assert shapes == {k: v.shape for k, v in plain.state_dict().items()}
    assert profile(deployed, 2) == profile(deploy_module(plain), 2)
    plain.load_state_dict(deployed.state_dict())  # the folded weights are a plain ELSR checkpoint
    x = torch.rand(1, 3, 19, 23)
    with torch.no_grad():
        ref = rep(x)
        assert (deployed(x) - ref).abs().max() < 1e-4 * ref.abs().max()
        assert torch.equal(plain(x), deployed(x))
    assert deploy_module(deployed) is deployed


def test_reparameterize_returns_a_plain_module_itself():
    plain = create_model("elsr", 2, pretrained=False)
    assert reparameterize(plain) is plain


def test_a_rep_checkpoint_loads_by_its_config_and_deploys(tmp_path):
    """What `mobile-sr train --arch rep=1` writes: the config names rep, so load_model rebuilds the branches."""
    rep = _randomise(create_model("elsr", 2, pretrained=False, rep=1))
    assert rep.config() == {"width": 16, "rep": 1}
    path = tmp_path / "model.safetensors"
    write_weights(rep, {"model": "elsr", "scale": 2, "config": rep.config()}, path)
    model = load_model(path)
    assert isinstance(model.module.head, RepConv)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(model.module(x), rep.eval()(x))


def test_rep_must_be_0_or_1():
    with pytest.raises(ValueError, match="rep must be 0 or 1"):
        create_model("elsr", 2, pretrained=False, rep=2)
    with pytest.raises(ValueError, match="odd kernel"):
        RepConv(3, 3, 4)
