"""YAML read as people write it: exponent-form numbers are floats (YAML 1.2, JSON)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from roadmap.arch import registry
from roadmap.arch.spec import NetSpec
from roadmap.train.recipe import parse_settings
from roadmap.util import yamlio


@pytest.mark.parametrize(
    ("text", "value"),
    [("1e-3", 0.001), ("1e-06", 1e-06), ("-2E+4", -20000.0), ("1.5", 1.5), (".5", 0.5),
     ("3", 3), ("1_000", 1000), (".inf", float("inf")), ("'1e-3'", "1e-3"), ("e5", "e5"),
     ("1.2.3", "1.2.3"), ("true", True), ("null", None)],
)  # fmt: skip
def test_numbers_read_as_yaml_1_2_reads_them(text: str, value: object) -> None:
    assert yamlio.load(f"x: {text}") == {"x": value}


def test_pyyaml_alone_reads_an_exponent_as_a_string() -> None:
    """Why the module exists: the check above fails with PyYAML's own safe loader."""
    assert yaml.safe_load("x: 1e-3") == {"x": "1e-3"}


def test_a_spec_saved_as_json_reads_back(tmp_path: Path) -> None:
    """ConvNeXt-T's layer scale (1e-06) is written by ``json`` in exponent form; reading the
    file back used to fail with "must be a finite number, got '1e-06'"."""
    spec = registry.build_spec(None, roadmap="convnext")
    for suffix in (".json", ".yaml"):
        spec.save(tmp_path / f"spec{suffix}")
        assert NetSpec.load(tmp_path / f"spec{suffix}") == spec


def test_a_setting_in_exponent_form_is_a_number() -> None:
    assert parse_settings(["base_lr=1e-3", "min_lr=1E-6"]) == {"base_lr": 0.001, "min_lr": 1e-06}
