"""Training recipes: what to train with, as a validated, hashable, frozen value.

A recipe is a small YAML file. Two ship with the package (``paper`` and ``quick``, in
``roadmap/train/recipes/``); a user can pass the path of their own. Loading checks every key, so a
typo ends with one line that names it instead of a silently ignored setting.

The learning rate follows one explicit rule, taken from the RepViT/DeiT code:
``lr = base_lr × global_batch / 512``. ``batch_size`` is the *global* batch (all processes
together), so a step's result does not depend on how many GPUs ran it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from roadmap.errors import RoadmapError
from roadmap.results.record import LrRule
from roadmap.util import yamlio
from roadmap.util.names import did_you_mean
from roadmap.util.registry import shown
from roadmap.util.typed import checked

# Keys added after 0.1, with the value a recipe file without them means. While a recipe holds
# that value, the key stays out of its hash, so records made before the key existed still match.
ADDED_LATER: dict[str, Any] = {
    "train_subset": None,
    "distillation": "none",
    "distillation_alpha": 0.5,
    "distillation_tau": 1.0,
    "teacher": None,
    "eval_every": 1,
}
# Keys that change what a run measures along the way but never the weights it trains (every
# epoch re-seeds from (seed, epoch, rank)): left out of the hash, so a run trained under either
# value is the same run.
NOT_HASHED = ("name", "eval_every")
SUBSET_SEED = 0  # which images a train_subset draws; fixed, so every run compares alike
LR_REFERENCE_BATCH = 512  # the batch at which base_lr applies (RepViT's main.py scales by /512)
# Large enough for any classification or detection input and any one machine's batch; small
# enough that a typo (100000) ends here, naming the key, instead of in the allocator. The
# command line's --img-size, --batch-size and --batch stop at the same bounds.
MAX_IMG_SIZE = 4096
MAX_BATCH = 4096
MAX_EPOCHS = 100_000
# RandAugment and AugMix settings timm reads from a policy string, and how far each may go:
# timm's magnitudes run 0..10 (``mmax`` raises the ceiling; 30 leaves room), and each op
# applied per image costs time on every image of every epoch (an 'n999' made one epoch of
# the fashion recipe take over two minutes).
AUGMENT_BOUNDS = {"m": 30.0, "n": 10.0, "mmax": 30.0, "mstd": 10.0, "w": 10.0, "d": 10.0}
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
CLIP_MODES = ("norm", "value", "agc")
DISTILLATIONS = ("none", "hard", "soft")


@dataclass(frozen=True)
class Recipe:
    """Everything that decides how a network is trained, and nothing about how it is run.

    Attributes:
        name: the recipe's name, used in result paths (not part of the hash).
        epochs: number of passes over the training set.
        batch_size: global batch, summed over all processes.
        img_size: training and evaluation resolution in pixels (square).
        optimizer: a timm optimizer name (``create_optimizer_v2``).
        base_lr: learning rate at a global batch of 512; scaled linearly with the batch.
        weight_decay: decoupled weight decay (not applied to biases and norm layers).
        opt_eps: the optimizer's epsilon.
        warmup_epochs: epochs of linear warm-up from ``warmup_lr`` (may be fractional).
        warmup_lr: learning rate at the first update.
        min_lr: floor of the cosine schedule.
        clip_grad: gradient clipping value, or None for no clipping.
        clip_mode: ``norm``, ``value`` or ``agc`` (adaptive clipping, RepViT's choice).
        label_smoothing: label smoothing of the targets.
        auto_augment: a timm augmentation policy such as ``rand-m9-mstd0.5-inc1``, or None.
        color_jitter: colour jitter strength (timm ignores it when ``auto_augment`` is set).
        hflip: probability of a horizontal flip.
        scale: area range of the random-resized crop.
        interpolation: resize interpolation.
        crop_pct: evaluation centre-crop fraction (0.875 is the 224/256 convention).
        mixup: Mixup alpha (0 turns it off).
        cutmix: CutMix alpha (0 turns it off).
        mixup_switch_prob: probability of CutMix instead of Mixup when both are on.
        random_erasing: probability of random erasing (per-pixel noise, as in DeiT).
        ema: keep an exponential moving average of the weights.
        ema_decay: decay of that average per update.
        train_subset: train on this many images of the training split, a stratified subset
            drawn with a fixed seed (``SUBSET_SEED``, the same for every network and training
            seed, so all runs see the same images); None for all of them.
        distillation: ``none``, ``hard`` (the distillation head learns the teacher's top
            class) or ``soft`` (its softened distribution): DeiT's knowledge distillation, as
            the official RepViT training runs it (:mod:`roadmap.train.distill`).
        distillation_alpha: the distillation loss's weight; the label loss gets 1 - alpha.
        distillation_tau: the softening temperature of ``soft``.
        teacher: the teacher, a timm model name (RepViT's: ``regnety_160``), or None.
        eval_every: score the validation split after every this many epochs, and always after
            the last (1: every epoch, as timm and the official code do). It cannot change the
            trained weights, so it is not part of the hash; ``best_*`` are over the scored
            epochs.
    """

    name: str
    epochs: int
    batch_size: int
    img_size: int
    optimizer: str
    base_lr: float
    weight_decay: float
    opt_eps: float
    warmup_epochs: float
    warmup_lr: float
    min_lr: float
    clip_grad: float | None
    clip_mode: str
    label_smoothing: float
    auto_augment: str | None
    color_jitter: float
    hflip: float
    scale: tuple[float, float]
    interpolation: str
    crop_pct: float
    mixup: float
    cutmix: float
    mixup_switch_prob: float
    random_erasing: float
    ema: bool
    ema_decay: float
    train_subset: int | None = None
    distillation: str = "none"
    distillation_alpha: float = 0.5
    distillation_tau: float = 1.0
    teacher: str | None = None
    eval_every: int = 1

    def peak_lr(self, global_batch: int | None = None) -> float:
        """The peak learning rate for a global batch (the recipe's own by default):
        ``base_lr x global_batch / 512``."""
        batch = self.batch_size if global_batch is None else global_batch
        return self.base_lr * batch / LR_REFERENCE_BATCH

    @property
    def uses_mixing(self) -> bool:
        """Whether Mixup or CutMix is on (the loss then takes soft targets)."""
        return self.mixup > 0 or self.cutmix > 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``scale`` as a list) that :func:`recipe_from_dict` reads back."""
        data = dataclasses.asdict(self)
        data["scale"] = list(self.scale)
        return data

    def to_yaml(self) -> str:
        """The recipe as YAML, in field order."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, **changes: Any) -> Recipe:
        """A copy with some fields changed (``None`` values are ignored), validated again."""
        kept = {key: value for key, value in changes.items() if value is not None}
        return recipe_from_dict({**self.to_dict(), **kept}, source=f"recipe {self.name!r}")


def recipe_hash(recipe: Recipe) -> str:
    """A short digest of the recipe's content: what decides the trained weights (``name`` and
    the other ``NOT_HASHED`` keys excluded; a key added later counts only when it is set)."""
    content = {
        key: value
        for key, value in recipe.to_dict().items()
        if key not in NOT_HASHED and not (key in ADDED_LATER and value == ADDED_LATER[key])
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def builtin_recipes() -> list[str]:
    """Names of the recipes shipped with the package."""
    folder = resources.files("roadmap.train") / "recipes"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_recipe(
    name_or_path: str | Path, *, settings: Sequence[str] = (), **overrides: Any
) -> Recipe:
    """Load a shipped recipe by name, or a YAML file by path, and apply overrides.

    Args:
        name_or_path: ``paper``, ``quick`` or the path of a YAML file.
        settings: ``KEY=VALUE`` strings (``--set``), each value read as YAML (``0.1``,
            ``true``, ``null``, ``[0.08, 1]``) and checked like the file's own.
        **overrides: field values that replace the file's (``None`` means keep the file's).

    Raises:
        RoadmapError: the recipe does not exist, is not valid YAML, or has a bad key or value
            (a bad setting names itself and ``--set``).
    """
    text, source, default_name = _read_recipe_text(str(name_or_path))
    try:
        data = yamlio.load(text)
    except yaml.YAMLError as exc:
        raise RoadmapError(f"{source} is not valid YAML: {_first_line(exc)}") from None
    if not isinstance(data, dict):
        raise RoadmapError(f"{source} must be a mapping of recipe keys to values")
    data.setdefault("name", default_name)
    recipe = recipe_from_dict(data, source=source)
    if settings:
        changed = {**recipe.to_dict(), **parse_settings(settings)}
        recipe = recipe_from_dict(changed, source=f"--set on {source}")
    return recipe.replace(**overrides) if overrides else recipe


def parse_settings(settings: Sequence[str]) -> dict[str, Any]:
    """``["mixup=0.2", "clip_grad=null"]`` -> ``{"mixup": 0.2, "clip_grad": None}``; a setting
    without ``=``, an unknown key or the recipe's name is one error naming it."""
    fields = [f.name for f in dataclasses.fields(Recipe) if f.name != "name"]
    parsed: dict[str, Any] = {}
    for setting in settings:
        key, eq, text = setting.partition("=")
        key = key.strip()
        if not eq or not key:
            raise RoadmapError(f"--set {setting!r}: write KEY=VALUE, e.g. --set mixup=0.2")
        if key == "name":
            raise RoadmapError("--set name=...: a recipe's name is its file's; save a recipe file")
        if key not in fields:
            raise RoadmapError(
                f"--set {setting!r}: no recipe key {key!r}{did_you_mean(key, fields)}; "
                f"the keys: {', '.join(fields)}"
            )
        try:
            parsed[key] = yamlio.load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise RoadmapError(f"--set {setting!r}: not a YAML value: {_first_line(exc)}") from None
    return parsed


def _read_recipe_text(name_or_path: str) -> tuple[str, str, str]:
    """The YAML text, a description of where it came from, and the default recipe name."""
    if name_or_path in builtin_recipes():
        resource = resources.files("roadmap.train") / "recipes" / f"{name_or_path}.yaml"
        return resource.read_text(), f"recipe {name_or_path!r}", name_or_path
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        known = builtin_recipes()
        raise RoadmapError(
            f"no recipe {name_or_path!r}{did_you_mean(str(name_or_path), known)}: use one of "
            f"{', '.join(known)} or the path of a .yaml recipe file"
        )
    try:
        return path.read_text(), f"recipe file {path}", path.stem
    except (OSError, UnicodeDecodeError) as exc:
        raise RoadmapError(f"cannot read recipe file {path}: {exc}") from None


def recipe_from_dict(data: dict[str, Any], *, source: str = "recipe") -> Recipe:
    """Build a :class:`Recipe` from plain data, checking every key and value.

    Raises:
        RoadmapError: a key is unknown or missing, or a value has the wrong type or range.
    """
    fields = {field.name: field.type for field in dataclasses.fields(Recipe)}
    for key in data:
        if key not in fields:
            raise RoadmapError(f"{source}: unknown key {key!r}; known keys are {', '.join(fields)}")
    data = {**ADDED_LATER, **data}
    missing = [key for key in fields if key not in data]
    if missing:
        raise RoadmapError(f"{source}: missing key {missing[0]!r}")
    values = {key: checked(data[key], fields[key], f"{source}: key {key!r}") for key in fields}
    recipe = Recipe(**values)
    _check_ranges(recipe, source)
    return recipe


def _check_ranges(recipe: Recipe, source: str) -> None:
    """Values that have the right type but make no sense end here, naming the key."""
    problems = {
        "epochs": not 1 <= recipe.epochs <= MAX_EPOCHS,
        "batch_size": not 1 <= recipe.batch_size <= MAX_BATCH,
        "img_size": not 32 <= recipe.img_size <= MAX_IMG_SIZE,
        "base_lr": recipe.base_lr <= 0,
        "warmup_epochs": recipe.warmup_epochs < 0,
        "clip_mode": recipe.clip_mode not in CLIP_MODES,
        "interpolation": recipe.interpolation not in INTERPOLATIONS,
        "crop_pct": not 0 < recipe.crop_pct <= 1,
        "scale": not 0 < recipe.scale[0] <= recipe.scale[1] <= 1,
        "ema_decay": not 0 <= recipe.ema_decay < 1,
        "train_subset": recipe.train_subset is not None and recipe.train_subset < 1,
        "eval_every": recipe.eval_every < 1,
        "distillation": recipe.distillation not in DISTILLATIONS,
        "distillation_alpha": not 0 <= recipe.distillation_alpha <= 1,
        "distillation_tau": recipe.distillation_tau <= 0,
    }
    for key in ("label_smoothing", "hflip", "mixup_switch_prob", "random_erasing"):
        problems[key] = not 0 <= getattr(recipe, key) <= 1
    for key in ("weight_decay", "opt_eps", "warmup_lr", "min_lr", "mixup", "cutmix"):
        problems[key] = getattr(recipe, key) < 0
    allowed = {
        "epochs": f"1 to {MAX_EPOCHS:,}",
        "batch_size": f"1 to {MAX_BATCH:,}, as --batch-size",
        "img_size": f"32 to {MAX_IMG_SIZE:,} px, as --img-size",
    }
    for key, bad in problems.items():
        if bad:
            bound = f" (allowed: {allowed[key]})" if key in allowed else ""
            raise RoadmapError(
                f"{source}: key {key!r} is out of range: {getattr(recipe, key)!r}{bound}"
            )
    if recipe.distillation != "none" and not recipe.teacher:
        raise RoadmapError(
            f"{source}: distillation {recipe.distillation!r} needs a teacher (a timm model name, "
            "e.g. teacher: regnety_160, or --teacher NAME)"
        )
    if recipe.teacher and recipe.distillation == "none":
        raise RoadmapError(
            f"{source}: key 'teacher' ({shown(recipe.teacher)}) has no effect without "
            "distillation: add --distillation hard (or soft), or drop the teacher"
        )
    problem = _optimizer_problem(recipe.optimizer) or _augment_problem(recipe.auto_augment)
    if problem:
        raise RoadmapError(f"{source}: {problem}")
    if recipe.uses_mixing and recipe.batch_size % 2:
        raise RoadmapError(f"{source}: key 'batch_size' must be even when Mixup/CutMix is on")


def _optimizer_problem(name: str) -> str:
    """Why timm would refuse the optimizer ("" when it takes it)."""
    from timm.optim import list_optimizers

    known = list_optimizers()
    if name.lower() in known:
        return ""
    return (
        f"key 'optimizer': timm has no optimizer {shown(name)!r}"
        f'{did_you_mean(name.lower(), known)}; `python -c "import timm.optim; '
        f'print(timm.optim.list_optimizers())"` lists them'
    )


def _augment_problem(policy: str | None) -> str:
    """Why timm would refuse the augmentation policy, or why it would take too long ("" when
    it is fine): the policy is built once here, on no image."""
    if policy is None:
        return ""
    from timm.data import auto_augment

    where = f"key 'auto_augment' ({shown(policy)})"
    name, *settings = policy.split("-")
    for setting in settings if name in ("rand", "augmix") else ():
        key = setting.rstrip("0123456789.")
        bound = AUGMENT_BOUNDS.get(key)
        value = setting[len(key) :]
        if bound is not None and value and float(value) > bound:
            return f"{where}: {key} is at most {bound:g} (each op runs on every image)"
    builders = {
        "rand": auto_augment.rand_augment_transform,
        "augmix": auto_augment.augment_and_mix_transform,
    }
    build = builders.get(name, auto_augment.auto_augment_transform)
    try:
        build(policy, {"translate_const": 100, "img_mean": (124, 116, 104)})
    except (AssertionError, ValueError, KeyError, IndexError) as e:
        said = str(e).splitlines()[0] if str(e) else type(e).__name__
        return f"{where}: timm refuses it ({said}); e.g. rand-m9-mstd0.5-inc1, augmix-m5-w4-d2"
    return ""


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]


def lr_rule(recipe: Recipe, processes: int) -> LrRule:
    """How the peak learning rate follows from ``recipe`` split over ``processes`` (for the
    run record)."""
    return LrRule(
        rule=f"base_lr x global_batch / {LR_REFERENCE_BATCH}",
        base_lr=recipe.base_lr,
        global_batch=recipe.batch_size,
        per_process_batch=recipe.batch_size // processes,
        processes=processes,
        peak_lr=recipe.peak_lr(),
    )
