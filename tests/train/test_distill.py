"""Knowledge distillation as DeiT and the official RepViT training define it: the loss against a
hand computation, the student's second head, the teacher (tiny, random: nothing downloads), the
record, and the official recipe."""

import json
import math

import pytest
import timm
import torch
from torch import nn
from typer.testing import CliRunner

import roadmap
from roadmap.arch.builder import build
from roadmap.arch.spec import replace
from roadmap.cli import app
from roadmap.errors import RoadmapError
from roadmap.interop.reference import check_reference
from roadmap.train import distill
from roadmap.train.recipe import load_recipe
from tests.helpers import SLOW

runner = CliRunner()
TINY = ["--data", "synthetic:16", "--epochs", "1", "--batch-size", "8", "--img-size", "32"]
TINY += ["--workers", "0", "--quiet"]


def distilled(step: str = "alternating_se", num_classes: int = 10) -> nn.Module:
    spec = roadmap.build_spec(step, num_classes=num_classes, roadmap="repvit")
    return build(replace(spec, head=replace(spec.head, distillation=True)))


class Fixed(nn.Module):
    """A 'teacher' that returns given logits and counts its calls."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits, self.calls = logits, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.logits


# Two images, three classes: the student's two heads and the teacher's logits.
CLS = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
DIST = torch.tensor([[0.0, 1.0, 0.0], [1.0, -1.0, 2.0]])
TEACHER = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 1.0]])
LABELS = torch.tensor([0, 1])


def cross_entropy(logits: list[float], target: int) -> float:
    return -logits[target] + math.log(sum(math.exp(v) for v in logits))


def test_hard_distillation_is_deits_formula() -> None:
    """(1 - a) CE(cls, labels) + a CE(dist, teacher's argmax), computed here by hand."""
    teacher = Fixed(TEACHER)
    loss = distill.DistillationLoss(nn.CrossEntropyLoss(), teacher, "hard", 0.5, 1.0)
    got = loss(torch.zeros(2, 3, 8, 8), (CLS, DIST), LABELS)
    base = (cross_entropy(CLS[0].tolist(), 0) + cross_entropy(CLS[1].tolist(), 1)) / 2
    taught = (cross_entropy(DIST[0].tolist(), 1) + cross_entropy(DIST[1].tolist(), 0)) / 2
    assert got.item() == pytest.approx(0.5 * base + 0.5 * taught, rel=1e-6)
    assert teacher.calls == 1  # once per step


def test_soft_distillation_is_deits_formula() -> None:
    """(1 - a) CE + a KL(teacher_T || student_T) T^2 / numel, summed over everything."""
    alpha, tau = 0.3, 2.0
    loss = distill.DistillationLoss(nn.CrossEntropyLoss(), Fixed(TEACHER), "soft", alpha, tau)
    got = loss(torch.zeros(2, 3, 8, 8), (CLS, DIST), LABELS)

    def softmax(v: list[float]) -> list[float]:
        e = [math.exp(x / tau) for x in v]
        return [x / sum(e) for x in e]

    kl = 0.0
    for s, t in zip(DIST.tolist(), TEACHER.tolist(), strict=True):
        p, q = softmax(t), softmax(s)
        kl += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    base = (cross_entropy(CLS[0].tolist(), 0) + cross_entropy(CLS[1].tolist(), 1)) / 2
    expected = (1 - alpha) * base + alpha * kl * tau * tau / DIST.numel()
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_the_loss_needs_both_heads() -> None:
    loss = distill.DistillationLoss(nn.CrossEntropyLoss(), Fixed(TEACHER), "hard", 0.5, 1.0)
    with pytest.raises(RoadmapError, match="both heads"):
        loss(torch.zeros(2, 3, 8, 8), CLS, LABELS)


def test_the_distillation_head_is_timms() -> None:
    """RepViT-M0.9 with the distillation head = timm's repvit_m0_9 as published (two heads);
    in training form it returns both logits, in eval and fused their average."""
    check = check_reference(distilled(), timm.create_model("repvit_m0_9", num_classes=10))
    assert check.equal, check
    model = distilled().train()
    x = torch.randn(2, 3, 64, 64)
    assert isinstance(model(x), torch.Tensor)  # until asked, one tensor: timm's contract
    model.set_distilled_training(True)
    a, b = model(x)
    assert a.shape == b.shape == (2, 10)
    model.eval()
    with torch.no_grad():
        head = model.get_classifier()
        features = model.forward_head(model.forward_features(x), pre_logits=True)
        torch.testing.assert_close(model(x), (head.head(features) + head.head_dist(features)) / 2)
        torch.testing.assert_close(roadmap.fuse(model)(x), model(x), rtol=1e-5, atol=1e-5)
    assert isinstance(roadmap.fuse(model).get_classifier(), nn.Linear)  # one head deployed


def test_a_plain_spec_hash_is_unchanged_and_the_distilled_one_differs() -> None:
    spec = roadmap.build_spec("alternating_se", roadmap="repvit")
    assert roadmap.spec_hash(spec) == roadmap.spec_hash(replace(spec, head=spec.head))
    assert roadmap.spec_hash(distill.student_spec(spec, load_recipe("paper-distill"))) != (
        roadmap.spec_hash(spec)
    )
    assert distill.student_spec(spec, load_recipe("paper")) is spec


def test_paper_distill_is_paper_plus_the_official_distillation() -> None:
    paper, distilled_recipe = load_recipe("paper"), load_recipe("paper-distill")
    assert (distilled_recipe.distillation, distilled_recipe.teacher) == ("hard", "regnety_160")
    assert (distilled_recipe.distillation_alpha, distilled_recipe.distillation_tau) == (0.5, 1.0)
    keys = ("name", "distillation", "distillation_alpha", "distillation_tau", "teacher")
    same = {k: v for k, v in distilled_recipe.to_dict().items() if k not in keys}
    assert same == {k: v for k, v in paper.to_dict().items() if k not in keys}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["distillation=hard"], "needs a teacher"),
        (["distillation=medium", "teacher=test_resnet"], "key 'distillation' is out of range"),
        (["distillation_alpha=1.5"], "key 'distillation_alpha' is out of range"),
        (["distillation_tau=0"], "key 'distillation_tau' is out of range"),
    ],
)
def test_bad_distillation_settings_are_named(settings: list[str], message: str) -> None:
    with pytest.raises(RoadmapError, match=message):
        load_recipe("quick", settings=settings)


def test_a_teacher_that_does_not_fit_is_one_error(tmp_path) -> None:
    recipe = load_recipe("quick", settings=["distillation=hard", "teacher=test_resnet"])
    cpu = torch.device("cpu")
    teacher = distill.load_teacher(recipe, 10, cpu)
    assert not teacher.model.training and teacher.weights == "random"
    assert not any(p.requires_grad for p in teacher.model.parameters())
    file = tmp_path / "teacher.pth"
    torch.save(timm.create_model("test_resnet", num_classes=7).state_dict(), file)
    with pytest.raises(RoadmapError, match="cannot load the teacher test_resnet from the file"):
        distill.load_teacher(recipe, 10, cpu, checkpoint=file)
    with pytest.raises(RoadmapError, match="published weights predict 1000 classes"):
        distill.load_teacher(recipe.replace(teacher="resnet18"), 10, cpu, pretrained=True)
    with pytest.raises(RoadmapError, match="not a timm model"):
        distill.load_teacher(recipe.replace(teacher="no_such_net"), 10, cpu)


@SLOW
def test_a_distilled_run_end_to_end(tmp_path, monkeypatch) -> None:
    """Train with a tiny teacher from a checkpoint file: the teacher runs once per step, the
    record says what taught the run, the folder says where its weights came from, and the
    table finds the run under the plain network's name."""
    teacher_file = tmp_path / "teacher.pth"
    torch.save(timm.create_model("test_resnet", num_classes=1000).state_dict(), teacher_file)
    calls = []
    load = distill.load_teacher

    def counted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        found = load(*args, **kwargs)
        found.model.register_forward_hook(lambda *_: calls.append(1))
        return found

    monkeypatch.setattr(distill, "load_teacher", counted)
    args = ["train", "--upto", "gelu", *TINY, "--results", tmp_path / "r"]
    args += ["--distillation", "soft", "--teacher", "test_resnet", "--distillation-tau", "2"]
    result = runner.invoke(app, [*map(str, args), "--teacher-checkpoint", str(teacher_file)])
    assert result.exit_code == 0, result.output
    (metrics,) = (tmp_path / "r").glob("synthetic-16/quick-*+teacher-file-*/gelu/seed0/*.json")
    record = json.loads(metrics.read_text())
    assert record["distillation"]["type"] == "soft" and record["distillation"]["tau"] == 2.0
    assert record["distillation"]["weights"].startswith("file-")
    assert len(calls) == 2  # 16 images, batch 8: two steps, one teacher pass each
    label = metrics.parents[2].name
    table = runner.invoke(app, ["table", "--upto", "gelu", "--data", "synthetic:16", "--recipe",
                                label, "--results", str(tmp_path / "r"), "--no-latency",
                                "--format", "json"])  # fmt: skip
    rows = json.loads(table.stdout)["rows"]
    assert rows[1]["name"] == "gelu" and rows[1]["top1"] is not None
    checkpoint = metrics.parent / "last.pt"  # scored in both forms, the two heads averaged
    scored = runner.invoke(app, ["eval", "--upto", "gelu", "--data", "synthetic:16",
                                 "--checkpoint", str(checkpoint), "--format", "json"])  # fmt: skip
    assert scored.exit_code == 0, scored.output
    scores = json.loads(scored.stdout)
    assert scores["top1"] == scores["fused_top1"] == record["top1"]
