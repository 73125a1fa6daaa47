"""The runtimes a deployed network runs in besides torch eager: one module each.

Each module holds everything the tool knows about its runtime, for both of its users: export
(:mod:`roadmap.measure.export` writes and checks files) and latency
(:mod:`roadmap.measure.latency` times the same program in memory):

- :mod:`~roadmap.measure.runtimes.onnxruntime`: ONNX serialization and ONNX Runtime sessions;
- :mod:`~roadmap.measure.runtimes.torchscript`: ``torch.jit`` tracing, saving and loading;
- :mod:`~roadmap.measure.runtimes.executorch`: ``.pte`` programs lowered to XNNPACK, and the
  ExecuTorch runtime;
- :mod:`~roadmap.measure.runtimes.coreml`: Core ML conversion and the package's structure
  (running Core ML needs macOS).

Each imports its runtime only when used, and says in one line how to install it when missing.
"""

# The names of the exported graphs' input and output (ONNX and Core ML).
INPUT_NAME, OUTPUT_NAME = "input", "logits"
