"""Re-parameterised training (models/reparam.py): ``deploy`` folds every multi-branch convolution into one plain
convolution, exactly, so that the exported graph of a re-parameterised model is that of the plain model."""

from __future__ import annotations

import copy

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
    assert deployed.config() == plain.config() == {"width": 16} and rep.config() == {"width": 16, "rep": 1}
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


# --- the OFA supernet's blocks (models/ofa): elastic ops that slice their branches with their weights ---

def _random_rep_supernet(seed: int = 0) -> nn.Module:
    """A re-parameterised supernet with every weight random, the branches (which start at zero) included, and the
    kernel transforms away from the identity, in double precision."""
    from mobile_sr.models.ofa import OFASR

    torch.manual_seed(seed)
    net = OFASR(rep=1).double()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return net.eval()


@pytest.mark.parametrize("form", ["pointwise", "depthwise"])
def test_the_block_convolutions_fold_to_the_sum_of_their_branches(form):
    """Against the branches written out as layers: the 1x1 through its inner width, the edge filters as their own
    depthwise convolution (so the merged kernel is checked, not only restated)."""
    from torch.nn import functional as F

    from mobile_sr.models.reparam import EDGE_FILTERS, RepDepthwise, RepPointwise

    torch.manual_seed(0)
    x = torch.randn(2, 12, 9, 7, dtype=torch.float64)
    if form == "pointwise":
        rep = _randomise(RepPointwise(12, 20, inner=40).double())
        branches = F.conv2d(x, rep.weight, rep.bias) + F.conv2d(F.conv2d(x, rep.rep_a[:, :, None, None]),
                                                                rep.rep_b[:, :, None, None])
    else:
        rep = _randomise(RepDepthwise(12, 5).double())
        edges = torch.stack([sum(s * torch.tensor(f, dtype=x.dtype) for s, f in zip(row, EDGE_FILTERS.values(), strict=True))
                             for row in rep.rep_edge])[:, None]
        branches = (F.conv2d(x, rep.weight, rep.bias, padding=2, groups=12)
                    + F.conv2d(x, edges, padding=1, groups=12))
    with torch.no_grad():
        folded = rep.fold()
        assert type(folded) is nn.Conv2d
        assert (rep(x) - branches).abs().max() < 1e-10
        assert (folded(x) - branches).abs().max() < 1e-10


def test_a_re_parameterised_supernet_cuts_subnets_that_deploy_to_the_plain_graph():
    """Elastic kernels and widths still slice (branches included): every sampled subnet, cut and then deployed,
    computes what the supernet computes with that arch active, and is exactly the plain subnet's graph."""
    import random

    from mobile_sr.models.ofa import OFASubnet, sample
    from mobile_sr.models.reparam import FOLDABLE

    net, rng = _random_rep_supernet(), random.Random(0)
    x = torch.rand(1, 3, 11, 13, dtype=torch.float64)
    for _ in range(6):
        arch = sample(rng, rng.choice((2, 4)))
        net.set_active(arch)
        with torch.no_grad():
            ref = net(x)
            cut = net.get_subnet(arch).double()
            assert cut.config()["rep"] == 1 and any(isinstance(m, FOLDABLE) for m in cut.modules())
            deployed = deploy_module(cut)
            plain = OFASubnet(arch.scale, **arch.subnet_config()).double()
            plain.load_state_dict(deployed.state_dict())  # a plain subnet's checkpoint: same keys and shapes
            assert deployed.config() == plain.config() == arch.subnet_config()  # what a search writes rebuilds it
            assert not any(isinstance(m, FOLDABLE) for m in deployed.modules())
            assert profile(copy.deepcopy(deployed).float(), arch.scale) == profile(copy.deepcopy(plain).float(),
                                                                                    arch.scale)
            assert (cut(x) - ref).abs().max() < 1e-10
            assert (plain(x) - ref).abs().max() < 1e-10, arch


def test_every_supernet_branch_contributes_and_moves_with_the_channel_sort():
    net = _random_rep_supernet(1)
    x = torch.rand(1, 3, 10, 10, dtype=torch.float64)
    with torch.no_grad():
        ref = net(x)
        for name in ("stages.0.0.expand.rep_b", "stages.0.0.depthwise.rep_edge", "stages.1.2.project.rep_a"):
            saved = net.get_parameter(name).clone()
            net.get_parameter(name).zero_()
            assert (net(x) - ref).abs().max() > 1e-4, name
            net.get_parameter(name).copy_(saved)
        net.sort_channels()  # the hidden channels are permuted in the branches too: the same function
        assert (net(x) - ref).abs().max() < 1e-10


def test_a_plain_supernet_loads_into_a_re_parameterised_one_as_the_same_function():
    """What `train --model ofa-sr --arch rep=1 --init-from ofa-sr` does: the branches start at zero. The other way
    round the branches would be dropped, so it is refused."""
    from mobile_sr.models.ofa import OFASR
    from mobile_sr.train.ofa import load_into

    torch.manual_seed(2)
    plain, rep = OFASR().eval(), OFASR(rep=1).eval()
    with torch.no_grad():
        for p in plain.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    load_into(rep, plain.state_dict(), "plain")
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        assert torch.equal(rep(x), plain(x))
    with pytest.raises(ValueError, match="re-parameterised supernet"):
        load_into(OFASR(), _random_rep_supernet().float().state_dict(), "rep")


def test_a_searched_cut_fine_tunes_re_parameterised_from_its_plain_weights():
    """`train --model ofa-s --arch rep=1 --init-from ofa-s`: the cut keeps its kernels and widths (the source's
    settings, with rep added), and starts as the same function."""
    from mobile_sr.train.trainer import TrainConfig, build_model

    cfg = TrainConfig(model="ofa-s", scale=2, data=[], out="", config={"rep": 1}, init_from="ofa-s")
    model, shipped = build_model(cfg).eval(), create_model("ofa-s", 2)
    assert model.config() == {**shipped.config(), "rep": 1}
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert (model(x) - shipped(x)).abs().max() < 1e-6
