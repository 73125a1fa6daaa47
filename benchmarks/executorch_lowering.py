"""What ExecuTorch's XNNPACK delegate takes of a network, and what it leaves to the portable
kernels: the ops outside the delegate, counted, for the float32 and the int8 program.

    python benchmarks/executorch_lowering.py --roadmap visformer deit_s visformer_s

The same lowering as ``roadmap latency --backend executorch [--int8]`` and ``roadmap export
--format executorch`` (:func:`roadmap.measure.runtimes.executorch.program_bytes`); this script
stops before serializing to read the lowered graph.
"""

from __future__ import annotations

import argparse
from collections import Counter

import torch

import roadmap
from roadmap.arch.reparam import fuse
from roadmap.measure.runtimes.executorch import quantize_int8, quiet


def outside_delegate(model: torch.nn.Module, x: torch.Tensor, int8: bool) -> tuple[int, Counter]:
    """(delegated calls, ops left outside the delegate) of the lowered program."""
    with quiet():
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        if int8:
            model = quantize_int8(model, x)
        with torch.no_grad():
            program = torch.export.export(model, (x,))
        lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    delegated, left = 0, Counter()
    for node in lowered.exported_program().graph_module.graph.nodes:
        if node.op != "call_function":
            continue
        name = getattr(node.target, "__name__", str(node.target))
        if "executorch_call_delegate" in name:
            delegated += 1
        elif "getitem" not in name:
            left[name.removeprefix("aten.").split(".")[0]] += 1
    return delegated, left


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("steps", nargs="+")
    parser.add_argument("--roadmap", required=True)
    parser.add_argument("--img-size", type=int, default=224)
    args = parser.parse_args()
    x = torch.randn(1, 3, args.img_size, args.img_size)
    for step in args.steps:
        model = fuse(roadmap.build_model(step, roadmap=args.roadmap)).eval()
        for int8 in (False, True):
            delegated, left = outside_delegate(model, x, int8)
            ops = ", ".join(f"{op} x{n}" for op, n in sorted(left.items())) or "none"
            form = "int8" if int8 else "fp32"
            print(f"{step} {form}: {delegated} delegated calls; outside the delegate: {ops}")


if __name__ == "__main__":
    main()
