"""ExecuTorch: ``torch.export`` -> ``to_edge_transform_and_lower`` with the XNNPACK partitioner -> ``.pte``.

int8 is PT2E with XNNPACK's quantizer (:mod:`.pt2e`). The partitioner decides what XNNPACK runs; the
rest runs on ExecuTorch's portable kernels, and :func:`_delegation` lists those ops.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .common import Loaded, OpsReport, TensorInfo
from .pt2e import quantize_pt2e


def export(wrapper: nn.Module, example: torch.Tensor, precision: str, calib: Sequence[torch.Tensor] | None,
           dest: Path) -> OpsReport:
    """fp32, or int8 (per-channel int8 weights, int8 activations); float I/O either way."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    module: nn.Module = wrapper
    if precision == "int8":
        assert calib is not None
        module = quantize_pt2e(wrapper, example, calib)
    edge = to_edge_transform_and_lower(torch.export.export(module, (example,)), partitioner=[XnnpackPartitioner()])
    report = _delegation(edge.exported_program().graph_module)
    dest.write_bytes(edge.to_executorch().buffer)
    return report


def _delegation(gm: torch.fx.GraphModule) -> OpsReport:
    """Ops inside the XNNPACK delegate blobs vs ops left in the top-level graph (getitem is plumbing)."""
    delegated, outside = 0, []
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target.__name__ == "getitem":
            continue
        if node.target.__name__ == "executorch_call_delegate":
            lowered = getattr(gm, node.args[0].target)
            delegated += sum(n.op == "call_function" for n in lowered.original_module.graph.nodes)
        else:
            outside.append(str(node.target))
    return OpsReport(delegated + len(outside), delegated, outside, "lowering")


def load(path: Path, threads: int = 1) -> Loaded:
    """Load the ``.pte`` from file in the ExecuTorch runtime (XNNPACK delegate compiled in)."""
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(path)
    method = program.load_method("forward")
    meta_in, meta_out = method.metadata.input_tensor_meta(0), method.metadata.output_tensor_meta(0)

    def run(x: np.ndarray) -> np.ndarray:
        return method.execute([torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))])[0].numpy()

    return Loaded(
        runtime=f"ExecuTorch {metadata.version('executorch')} (XNNPACK)",
        inputs=[TensorInfo("input", list(meta_in.sizes()), "NCHW", "float32")],  # positional in a .pte
        outputs=[TensorInfo("output", list(meta_out.sizes()), "NCHW", "float32")],
        run=run,
    )
