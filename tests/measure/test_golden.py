"""Per-step params and MACs equal the committed golden file (regenerate: tests/make_golden.py)."""

import json

import pytest

from tests.helpers import representative
from tests.make_golden import GOLDEN, golden_cases, measure

GOLDEN_DATA = json.loads(GOLDEN.read_text())


def test_golden_file_covers_every_case():
    assert set(golden_cases()) == set(GOLDEN_DATA) - {"_about"}


CASES = list(golden_cases().items())


@pytest.mark.parametrize(("name", "steps"), representative(CASES, (0, 10, -1)))
def test_counts_match_golden(name, steps):
    assert measure(steps) == GOLDEN_DATA[name], (
        f"{name}: the architecture changed; if intended, run python tests/make_golden.py"
    )


def test_endpoint_counts_are_the_papers():
    first, last = GOLDEN_DATA["mobilenetv3_large"], GOLDEN_DATA["alternating_se"]
    assert first["params"] == 5_483_032
    assert round(first["deploy_macs"] / 1e6, 1) == 216.6  # conv + linear, as in code.md
    assert last["params"] == 5_103_560
    assert last["deploy_params"] == 5_067_056
    assert round(last["deploy_macs"] / 1e9, 3) == pytest.approx(0.816, abs=0.001)


@pytest.mark.parametrize("name", representative(list(golden_cases())))
def test_fvcore_agrees_with_torch_flop_counter(name):
    """A second, independent counter (dispatch-level, counts 2 flops per MAC) gives the same."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import roadmap
    from roadmap.arch.reparam import fuse

    deploy = fuse(roadmap.build_model(steps=golden_cases()[name], roadmap="repvit"))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        deploy(torch.zeros(1, 3, 224, 224))
    assert counter.get_total_flops() // 2 == GOLDEN_DATA[name]["deploy_macs"]
