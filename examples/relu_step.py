"""Extension step: ReLU instead of GELU (a step of your own, loaded with --plugin).

**The change.** Every activation that the ``gelu`` step made GELU becomes ReLU again.

**Why try it.** The paper switches to GELU for Core ML support, not for accuracy, and ReLU is
the cheapest activation on nearly every backend. Applied after the whole roadmap it asks:
how much of RepViT's latency and accuracy is the activation function?

**What the paper measured.** Nothing: this step is not in the paper. Run
``roadmap --plugin examples/relu_step.py table --steps alternating_se,relu`` to measure it.
"""

from roadmap import NetSpec, map_blocks, register_step, replace


@register_step("relu", title="ReLU instead of GELU (extension)", section="§ext", roadmap="repvit")
def relu(spec: NetSpec) -> NetSpec:
    """Set every block and head activation (except "none") to ReLU."""
    spec = map_blocks(
        spec, lambda _path, b: b if b.activation == "none" else replace(b, activation="relu")
    )
    return replace(spec, head=replace(spec.head, activation="relu"))
