"""Knowledge distillation, as DeiT defines it and the official RepViT training runs it.

The student carries a second classifier, the distillation head (``HeadSpec.distillation``;
:class:`roadmap.arch.layers.DistilledClassifier`). In training, the class head learns the
labels and the distillation head the teacher's predictions on the same (augmented, mixed)
images:

    loss = (1 - alpha) * base(class_logits, labels) + alpha * distill(dist_logits, teacher)

- ``hard``: ``distill`` is cross-entropy against the teacher's top class;
- ``soft``: the KL divergence between the two distributions softened by ``tau``, times
  ``tau**2``, summed and divided by the logits' element count (DeiT's ``losses.py``, which
  RepViT copies).

``base`` is the recipe's usual loss (soft-target cross-entropy with Mixup). The teacher runs in
eval mode, without gradients, once per step, on the same device. Evaluation and the deploy form
average the two heads (timm's ``repvit_m0_9`` does the same), so the trained network is scored,
fused and exported like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from roadmap.arch.spec import NetSpec, replace
from roadmap.errors import RoadmapError
from roadmap.train import distributed
from roadmap.train.recipe import Recipe
from roadmap.train.run_options import RunOptions
from roadmap.util import files


def student_spec(spec: NetSpec, recipe: Recipe) -> NetSpec:
    """The spec trained: with a distillation head when the recipe distills."""
    if recipe.distillation == "none" or spec.head.distillation:
        return spec
    return replace(spec, head=replace(spec.head, distillation=True))


class DistillationLoss(nn.Module):
    """DeiT's distillation loss around the recipe's own loss (see the module doc)."""

    def __init__(self, base: nn.Module, teacher: nn.Module, kind: str, alpha: float, tau: float):
        super().__init__()
        if kind not in ("hard", "soft"):
            raise ValueError(f"distillation must be hard or soft here, not {kind!r}")
        self.base, self.teacher = base, teacher
        self.kind, self.alpha, self.tau = kind, alpha, tau

    @classmethod
    def of(cls, base: nn.Module, teacher: nn.Module, recipe: Recipe) -> DistillationLoss:
        """The loss a distilling recipe asks for."""
        a, t = recipe.distillation_alpha, recipe.distillation_tau
        return cls(base, teacher, recipe.distillation, a, t)

    def forward(
        self,
        inputs: torch.Tensor,
        outputs: tuple[torch.Tensor, torch.Tensor],
        labels: torch.Tensor,
    ) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            raise RoadmapError("distillation needs both heads' logits: set_distilled_training")
        logits, logits_dist = outputs
        base = self.base(logits, labels)
        with torch.no_grad():
            taught = self.teacher(inputs)
        if self.kind == "soft":
            t = self.tau
            distill = (
                F.kl_div(
                    F.log_softmax(logits_dist / t, dim=1),
                    F.log_softmax(taught / t, dim=1),
                    reduction="sum",
                    log_target=True,
                )
                * (t * t)
                / logits_dist.numel()
            )
        else:
            distill = F.cross_entropy(logits_dist, taught.argmax(dim=1))
        return base * (1 - self.alpha) + distill * self.alpha


@dataclass(frozen=True)
class Teacher:
    """The teacher a run distils from, and where its weights came from."""

    model: nn.Module
    name: str
    weights: str  # "timm:<name>" (published), "file-<digest>", or "random"

    def describe(self, recipe: Recipe) -> dict[str, Any]:
        """What the run record keeps about the distillation."""
        return {
            "type": recipe.distillation,
            "alpha": recipe.distillation_alpha,
            "tau": recipe.distillation_tau,
            "teacher": self.name,
            "weights": self.weights,
        }


def weights_label(pretrained: bool, checkpoint: str | Path | None) -> str:
    """Where the teacher's weights come from, as the run's folder label says it:
    ``pretrained``, ``file-<digest>`` or ``random``."""
    if pretrained:
        return "pretrained"
    if checkpoint is not None:
        return f"file-{files.digest(checkpoint, '--teacher-checkpoint')}"
    return "random"


def load_teacher(
    recipe: Recipe,
    num_classes: int,
    device: torch.device,
    *,
    pretrained: bool = False,
    checkpoint: str | Path | None = None,
    channels_last: bool = False,
) -> Teacher:
    """The recipe's teacher, in eval mode and frozen, on ``device``.

    Its weights: timm's published ones with ``pretrained`` (downloaded through timm's cache,
    and only then), a checkpoint file (a timm or ``roadmap train`` state dict of the same
    model and class count), or none (random: for tests and throughput only).

    Raises:
        RoadmapError: an unknown model, a checkpoint that does not fit it, or a pretrained
            teacher whose classes are not the data's.
    """
    import timm

    name = recipe.teacher or ""
    if name.startswith("roadmap_"):  # one of our own networks as the teacher
        from roadmap.interop.timm_models import register_timm_models

        register_timm_models()
    if not timm.is_model(name):
        raise RoadmapError(f"teacher {name!r} is not a timm model (timm.list_models() has them)")
    label = weights_label(pretrained, checkpoint)
    if pretrained:  # before any download: the published classifier must fit the data
        published = _published_classes(name)
        if published is not None and published != num_classes:
            raise RoadmapError(
                f"the teacher {name}'s published weights predict {published} classes, the data "
                f"has {num_classes}: fine-tune a teacher on this data and pass "
                "--teacher-checkpoint"
            )
    try:
        if pretrained:
            model = timm.create_model(name, pretrained=True)
        else:
            model = timm.create_model(name, num_classes=num_classes)
            if checkpoint is not None:
                timm.models.load_checkpoint(model, str(checkpoint), use_ema=False, strict=True)
    except RoadmapError:
        raise
    except Exception as e:  # a network error, a damaged file, keys of another model
        where = f"the file {checkpoint}" if checkpoint else "timm's hub" if pretrained else "timm"
        raise RoadmapError(
            f"cannot load the teacher {name} from {where}: {type(e).__name__}: {e}"
        ) from None
    if model.num_classes != num_classes:
        raise RoadmapError(
            f"the teacher {name} predicts {model.num_classes} classes, the data has "
            f"{num_classes}: fine-tune a teacher on this data and pass --teacher-checkpoint"
        )
    model = model.to(device).eval().requires_grad_(False)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    weights = {"pretrained": f"timm:{name}", "random": "random"}.get(label, label)
    return Teacher(model, name, weights)


def _published_classes(name: str) -> int | None:
    """How many classes timm's published weights for ``name`` predict (None if unknown)."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    return getattr(cfg, "num_classes", None) if cfg is not None else None


def teacher_for(
    recipe: Recipe, num_classes: int, options: RunOptions, procs: distributed.Processes
) -> Teacher | None:
    """The run's teacher, or None when the recipe does not distil; with published weights,
    rank 0 loads first (it may download) and the others then read timm's cache."""
    if recipe.distillation == "none":
        return None
    downloads = options.teacher_pretrained
    if downloads and not procs.primary:
        distributed.barrier(procs)
    teacher = load_teacher(
        recipe,
        num_classes,
        procs.device,
        pretrained=options.teacher_pretrained,
        checkpoint=options.teacher_checkpoint,
        channels_last=options.channels_last,
    )
    if downloads and procs.primary:
        distributed.barrier(procs)
    return teacher
