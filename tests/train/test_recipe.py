"""Recipes: the shipped ones say what the paper says, and a bad file names its bad key."""

import re
import shlex
from pathlib import Path

import pytest

from roadmap.errors import RoadmapError
from roadmap.train.recipe import (
    LR_REFERENCE_BATCH,
    builtin_recipes,
    load_recipe,
    recipe_from_dict,
    recipe_hash,
)


def test_shipped_recipes_load() -> None:
    assert {"paper", "quick"} <= set(builtin_recipes())
    for name in builtin_recipes():
        assert load_recipe(name).name == name


def test_paper_recipe_is_the_papers() -> None:
    r = load_recipe("paper")
    assert (r.optimizer, r.base_lr, r.weight_decay) == ("adamw", 1e-3, 0.025)
    assert (r.epochs, r.warmup_epochs, r.img_size) == (300, 5, 224)
    assert r.label_smoothing == 0.1 and r.auto_augment.startswith("rand-m9")
    assert (r.mixup, r.cutmix, r.random_erasing) == (0.8, 1.0, 0.25)
    assert r.ema


def test_lr_scales_linearly_with_the_global_batch() -> None:
    r = load_recipe("paper", batch_size=1024)
    assert LR_REFERENCE_BATCH == 512
    assert r.peak_lr() == pytest.approx(2e-3)
    assert r.peak_lr(global_batch=256) == pytest.approx(5e-4)


def test_overrides_apply_and_change_the_hash_but_not_the_name() -> None:
    quick = load_recipe("quick")
    changed = load_recipe("quick", epochs=1, base_lr=0.5, img_size=48, batch_size=None)
    assert (changed.epochs, changed.base_lr, changed.img_size) == (1, 0.5, 48)
    assert changed.batch_size == quick.batch_size
    assert recipe_hash(changed) != recipe_hash(quick)
    assert recipe_hash(quick.replace(name="renamed")) == recipe_hash(quick)


def test_yaml_round_trip(tmp_path: Path) -> None:
    quick = load_recipe("quick")
    path = tmp_path / "mine.yaml"
    path.write_text(quick.to_yaml())
    assert load_recipe(path) == quick


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def test_unknown_key_is_named(tmp_path: Path) -> None:
    text = load_recipe("quick").to_yaml() + "learning_rate: 0.1\n"
    with pytest.raises(RoadmapError, match="unknown key 'learning_rate'"):
        load_recipe(_write(tmp_path, text))


def test_missing_key_is_named() -> None:
    data = load_recipe("quick").to_dict()
    del data["weight_decay"]
    with pytest.raises(RoadmapError, match="missing key 'weight_decay'"):
        recipe_from_dict(data)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("epochs", "ten", "key 'epochs': must be a whole number"),
        ("epochs", 2.5, "key 'epochs': must be a whole number"),
        ("ema", "yes", "key 'ema': must be true or false"),
        ("scale", [0.5], "key 'scale': must be a list of two numbers"),
        ("base_lr", None, "key 'base_lr': needs a value"),
        ("hflip", 1.5, "'hflip' is out of range"),
        ("interpolation", "lanczos9", "'interpolation' is out of range"),
        ("epochs", 0, "'epochs' is out of range"),
    ],
)
def test_bad_values_are_named(key: str, value: object, message: str) -> None:
    data = {**load_recipe("quick").to_dict(), key: value}
    with pytest.raises(RoadmapError, match=message):
        recipe_from_dict(data)


def test_mixup_needs_an_even_batch() -> None:
    with pytest.raises(RoadmapError, match="batch_size"):
        load_recipe("paper", batch_size=255)


def test_unknown_recipe_lists_the_shipped_ones() -> None:
    with pytest.raises(RoadmapError, match="paper, paper-distill, quick"):
        load_recipe("papr")


def test_not_yaml_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RoadmapError, match="not valid YAML"):
        load_recipe(_write(tmp_path, "epochs: [1, 2\n"))
    with pytest.raises(RoadmapError, match="must be a mapping"):
        load_recipe(_write(tmp_path, "- 1\n- 2\n"))


def test_set_changes_any_key_and_files_the_run_under_the_recipes_hash() -> None:
    from roadmap.train.identity import recipe_label

    quick = load_recipe("quick")
    changed = load_recipe("quick", settings=["mixup=0.2", "clip_grad=1", "scale=[0.5, 1]"])
    assert (changed.mixup, changed.clip_grad, changed.scale) == (0.2, 1.0, (0.5, 1.0))
    assert recipe_label(changed) == f"quick-{recipe_hash(changed)}" != recipe_label(quick)
    paper = load_recipe("paper", settings=["auto_augment=null", "ema=false"])
    assert paper.auto_augment is None and paper.ema is False  # null and false are values
    assert load_recipe("quick", settings=["mixup=0.2"], epochs=1).epochs == 1  # options too


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("mixup", "write KEY=VALUE"),
        ("mixupp=0.2", "no recipe key 'mixupp' (did you mean 'mixup'?)"),
        ("name=mine", "a recipe's name is its file's"),
        ("mixup=abc", "key 'mixup': must be a finite number, got 'abc'"),
        ("mixup=-1", "key 'mixup' is out of range"),
        ("epochs=2.5", "key 'epochs': must be a whole number"),
        ("clip_grad=[1", "not a YAML value"),
    ],
)
def test_a_bad_setting_is_one_error_that_names_it(setting: str, message: str) -> None:
    with pytest.raises(RoadmapError, match=re.escape(message)):
        load_recipe("quick", settings=[setting])


def test_the_equivalent_command_repeats_every_setting() -> None:
    from roadmap.arch.selection import Selection
    from roadmap.train.recipe import parse_settings
    from roadmap.train.run_options import equivalent_command
    from roadmap.train.sources import parse_source

    recipe = load_recipe("quick", settings=["mixup=0.2", "auto_augment=rand-m9-mstd0.5"])
    words = shlex.split(
        equivalent_command(Selection.of("repvit", "gelu"), parse_source("digits"), recipe, 0)
    )
    settings = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
    assert load_recipe("quick", settings=settings) == recipe
    assert parse_settings(settings) == {"mixup": 0.2, "auto_augment": "rand-m9-mstd0.5"}


# The `paper` recipe key by key, and where each value comes from: the trace the comments of
# roadmap/train/recipes/paper.yaml write out ([paper §N], [code] = THU-MIG/RepViT main.py
# defaults, [timm] = a default of the timm function the code calls). A value that drifts, or a
# key whose comment stops naming its source, fails here.
PAPER_TRACE = {
    "epochs": (300, "[paper §4.1]"),
    "batch_size": (2048, "[code]"),  # 256 per GPU x 8 (README); the logs' peak lr agrees
    "img_size": (224, "[paper §4.1]"),
    "optimizer": ("adamw", "[paper §3.1]"),
    "base_lr": (1e-3, "[code]"),
    "weight_decay": (0.025, "[code]"),
    "opt_eps": (1e-8, "[code]"),
    "warmup_epochs": (5, "[code]"),
    "warmup_lr": (1e-6, "[code]"),
    "min_lr": (1e-5, "[code]"),
    "clip_grad": (0.02, "[code]"),
    "clip_mode": ("agc", "[code]"),
    "label_smoothing": (0.1, "[paper §3.1]"),
    "auto_augment": ("rand-m9-mstd0.5-inc1", "[code]"),
    "color_jitter": (0.4, "[code]"),
    "hflip": (0.5, "[timm]"),
    "scale": ([0.08, 1.0], "[timm]"),
    "interpolation": ("bicubic", "[code]"),
    "crop_pct": (0.875, "[code]"),
    "mixup": (0.8, "[paper §3.1]"),
    "cutmix": (1.0, "[code]"),
    "mixup_switch_prob": (0.5, "[code]"),
    "random_erasing": (0.25, "[paper §3.1]"),
    "ema": (True, "[code]"),
    "ema_decay": (0.99996, "[code]"),
}


def _comment_of(key: str, lines: list[str]) -> str:
    """The comment on a key's line and the comment lines right above it."""
    at = next(i for i, line in enumerate(lines) if line.startswith(f"{key}:"))
    above = []
    for line in reversed(lines[:at]):
        if not line.startswith("#"):
            break
        above.append(line)
    return " ".join([*above, lines[at].partition("#")[2]])


def test_the_paper_recipe_is_its_trace() -> None:
    from importlib import resources

    recipe = load_recipe("paper").to_dict()
    later = ("train_subset", "distillation", "distillation_alpha", "distillation_tau", "teacher")
    later += ("eval_every",)  # 1, every epoch, as the official main.py evaluates
    assert {k: v for k, (v, _) in PAPER_TRACE.items()} == {
        k: v for k, v in recipe.items() if k not in ("name", *later)
    }
    assert recipe["train_subset"] is None  # all of ImageNet's training images
    assert (recipe["distillation"], recipe["teacher"]) == ("none", None)  # [paper §3.1]
    path = resources.files("roadmap.train") / "recipes" / "paper.yaml"
    lines = path.read_text().splitlines()
    for key, (_, source) in PAPER_TRACE.items():
        assert source in _comment_of(key, lines), f"paper.yaml: {key} does not cite {source}"


def test_the_trace_check_sees_a_drifted_value_and_a_missing_source() -> None:
    lines = ["# [code] --batch-size 256 x 8", "batch_size: 2048", "base_lr: 1.0e-3"]
    assert "[code]" in _comment_of("batch_size", lines)
    assert "[code]" not in _comment_of("base_lr", lines)  # no comment: the test above fails
    drifted = load_recipe("paper", settings=["weight_decay=0.05"]).to_dict()
    assert drifted["weight_decay"] != PAPER_TRACE["weight_decay"][0]


def test_base_lr_is_called_that_from_the_flag_on() -> None:
    """--base-lr sets the recipe's base_lr (--lr, its 0.2 name, too); the peak rate is derived
    from it and the global batch, and both reach the record (tests/train/test_train.py)."""
    from roadmap.cli.groups import recipe_group

    new = recipe_group(recipe="quick", base_lr=0.008)
    assert new.base_lr == 0.008 and new.peak_lr() == pytest.approx(0.008 * new.batch_size / 512)
    helps = {p.opts[0]: p for p in _recipe_options()}
    assert helps["--base-lr"].opts == ["--base-lr", "--lr"]


def _recipe_options() -> list:
    import typer.main

    from roadmap.cli import app

    return typer.main.get_command(app).commands["train"].params


def test_a_one_update_run_says_nothing_about_cosine_annealing(caplog) -> None:
    """timm warns that a one-update cosine schedule does nothing; a one-epoch, one-batch run is
    what was asked for, so the warning does not reach the terminal."""
    import logging

    import torch

    from roadmap.train import setup

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with caplog.at_level(logging.WARNING):
        setup.schedule(optimizer, load_recipe("quick").replace(epochs=1, warmup_epochs=0), 1)
    assert "will have no effect" not in caplog.text
