"""Starting weights: timm's ImageNet weights for the networks timm has, or any state dict.

Each roadmap's two ends exist in timm with published ImageNet weights (RepViT's: step 0 is
``mobilenetv3_large_100`` and the last step ``repvit_m0_9``, with ``--size`` the rest of the
family; ConvNeXt's: ``resnet50`` and ``convnext_tiny``). ``--pretrained`` loads those weights
into ours:

- timm builds its own model and loads the weights through its own hub machinery and cache
  (the only download this tool ever makes, and only when asked), or from a local file in timm's
  own key names (``pretrained_cfg_overlay=dict(file=...)``, ``--pretrained-file``);
- the weights are copied layer by layer in the order a forward pass runs the layers (conv,
  linear, BatchNorm and LayerNorm layers, with their running statistics, and any parameter a
  block holds itself, such as ConvNeXt's layer scale ``gamma``), each shape checked: the two
  codebases name their layers differently, but run the same layers in the same order (the
  endpoint tests prove it). A layer that does not map is one clear error;
- the classifier is copied when the class counts agree and re-initialized otherwise (fine-
  tuning). timm's RepViT weights carry two classifiers (the distillation head) that evaluation
  averages; both are folded and averaged into our one BN-linear classifier, its BN set to the
  identity, so our evaluation equals timm's.

``--init PATH`` starts from any state dict in our own names instead (a ``last.pt`` of ``roadmap
train``, or a ``roadmap_*`` timm model's ``state_dict()``): every tensor whose name and shape
match is loaded, the rest keeps its fresh init, and the run's record lists what was not loaded.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from roadmap.arch.layers import DistilledClassifier
from roadmap.arch.selection import Selection
from roadmap.errors import RoadmapError

LAYERS = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)


@dataclass
class Loaded:
    """What starting weights a network got.

    Attributes:
        source: where they came from (``timm:repvit_m0_9``, or a file).
        loaded: how many tensors were loaded.
        skipped: names of our tensors that kept their fresh initialization.
        classifier: whether the classifier was loaded (False when the class count differs).
    """

    source: str
    loaded: int = 0
    skipped: list[str] = field(default_factory=list)
    classifier: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "loaded": self.loaded,
            "skipped": self.skipped,
            "classifier": self.classifier,
        }


def reference(selection: Selection) -> str:
    """The timm model whose published weights fit this network.

    Raises:
        RoadmapError: the network is not one timm has weights for.
    """
    roadmap = selection.roadmap
    unsized = dataclasses.replace(selection, size=None)
    last = selection.steps[-1] if selection.steps else None
    references = dict(roadmap.references)
    if unsized.is_roadmap_prefix and last in references:
        if selection.size is None:
            return references[last]
        if last == roadmap.order[-1] and selection.size.timm_name:
            return selection.size.timm_name  # a family member
    ends = " or ".join(f"--upto {step}" for step in references)
    sizes = [s.label for s in roadmap.family if s.timm_name]
    family = f" or a family member (--size {sizes[-1]})" if sizes else ""
    raise RoadmapError(
        f"no published weights fit {selection.name}: --pretrained takes {ends}{family}; "
        "use --init PATH for weights of your own"
    )


def load_reference(name: str, file: str | Path | None = None) -> nn.Module:
    """timm's model with its published weights (downloaded through timm's cache), or with the
    weights of a local file in timm's key names."""
    import timm

    kwargs: dict[str, Any] = {}
    if file is not None:
        if not Path(file).is_file():
            raise RoadmapError(f"weights file not found: {file}")
        kwargs["pretrained_cfg_overlay"] = {"file": str(file)}
    try:
        if file is not None and not _has_distillation_head(file):
            try:  # a one-head file of a model with a distillation head (RepViT's): one head
                return timm.create_model(name, pretrained=True, distillation=False, **kwargs).eval()
            except TypeError as e:  # the model has no such option: no distillation head
                if "distillation" not in str(e):
                    raise
        return timm.create_model(name, pretrained=True, **kwargs).eval()
    except RoadmapError:
        raise
    except Exception as e:  # a network error, a damaged file, keys of another model
        where = f"the file {file}" if file else f"timm's hub ({name})"
        raise RoadmapError(
            f"cannot load {name}'s weights from {where}: {type(e).__name__}: {e}"
        ) from None


def _has_distillation_head(file: str | Path) -> bool:
    """Whether a timm weights file holds a distillation head (``head.head_dist``): RepViT's
    published weights do; one saved from ``repvit_m0_9`` built with ``distillation=False``
    (what fine-tuning without distillation leaves) does not, and neither do the files of
    models that have no such head."""
    from timm.models import load_state_dict

    try:
        keys = load_state_dict(str(file), use_ema=False)
    except Exception:
        return True  # unreadable here: let timm's own loading report it
    return any(".head_dist." in f".{key}" for key in keys)


def load_reference_cfg(name: str) -> dict[str, Any]:
    """timm's pretrained config of a model (its evaluation resolution, crop and resize)."""
    from timm.models import get_pretrained_cfg

    return get_pretrained_cfg(name).to_dict()


def load_pretrained(model: nn.Module, selection: Selection, file: str | None = None) -> Loaded:
    """Copy timm's published weights for ``selection`` into ``model`` (see the module doc)."""
    name = reference(selection)
    theirs = load_reference(name, file)
    copied = copy_by_order(model, theirs)
    classifier = model.num_classes > 0 and copy_classifier(model, theirs)
    skipped = [] if classifier else [n for n, _ in model.get_classifier().named_parameters()]
    source = f"timm:{name}" + (f" ({file})" if file else "")
    return Loaded(source, copied, [f"head.classifier.{n}" for n in skipped], classifier)


def copy_by_order(ours: nn.Module, theirs: nn.Module) -> int:
    """Copy every conv/linear/BN layer but the classifier, pairing layers in execution order.

    Returns:
        How many tensors were copied.

    Raises:
        RoadmapError: the two networks do not run the same layers.
    """
    a, b = executed(ours), executed(theirs)
    if len(a) != len(b):
        raise RoadmapError(
            f"the weights do not map: this network runs {len(a)} conv/linear/BN layers before "
            f"its classifier, the reference {len(b)}"
        )
    copied = 0
    for i, (mine, other) in enumerate(zip(a, b, strict=True)):
        state, incoming = state_of(mine), state_of(other)
        if [v.shape for v in state] != [v.shape for v in incoming]:
            raise RoadmapError(
                f"the weights do not map at layer {i}: {mine} here, {other} in the reference"
            )
        with torch.no_grad():
            for tensor, value in zip(state, incoming, strict=True):
                tensor.copy_(value)
        copied += len(incoming)
    return copied


class FreeTensor(nn.Module):
    """A tensor a network holds at its top rather than in a layer (a ViT's class token and
    position embedding are timm's model's own), standing in :func:`executed`'s list where the
    forward pass first uses it."""

    def __init__(self, name: str, tensor: torch.Tensor):
        super().__init__()
        self.name = name
        if isinstance(tensor, nn.Parameter):
            self.register_parameter("tensor", tensor)
        else:
            self.register_buffer("tensor", tensor)

    def extra_repr(self) -> str:
        return f"{self.name}: {tuple(self.tensor.shape)}"


def state_of(module: nn.Module) -> list[torch.Tensor]:
    """What one executed layer holds, in a fixed order: a layer's whole state, or the tensors
    another module holds itself (ConvNeXt's ``gamma``, a ViT's ``cls_token``). Two layers of
    the same kind list theirs in the same order whatever the codebases call them."""
    if isinstance(module, LAYERS):
        return list(module.state_dict(keep_vars=True).values())
    return [*module.parameters(recurse=False), *module.buffers(recurse=False)]


def _holds_tensors(module: nn.Module) -> bool:
    own = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
    return isinstance(module, LAYERS) or bool(own)


def executed(model: nn.Module, img_size: int | None = None) -> list[nn.Module]:
    """The layers (and other modules holding tensors of their own) in the order a forward pass
    finishes them, the classifier left out.

    The tensors the model holds itself (timm's ViT holds its class token and position
    embedding at the top) are each listed where the forward pass first uses them, as
    :class:`FreeTensor` s: a network that keeps them in a module of their own (ours) lists
    them in the same place. ``img_size`` defaults to the model's fixed input size if it has
    one (timm's ViT and Visformer), else 64.
    """
    skip = {id(m) for m in model.get_classifier().modules()}
    inside_layers = {
        id(c) for m in model.modules() if isinstance(m, LAYERS) for c in m.modules() if c is not m
    }
    order: list[nn.Module] = []
    hooks = [
        m.register_forward_hook(lambda mod, _i, _o: order.append(mod))
        for m in model.modules()
        if m is not model and _holds_tensors(m) and id(m) not in skip and id(m) not in inside_layers
    ]
    own = {
        id(t): (name, t)
        for name, t in [*model.named_parameters(recurse=False), *model.named_buffers(recurse=False)]
    }
    places: list[tuple[int, FreeTensor]] = []
    size = img_size or fixed_input_size(model) or 64
    was_training = model.training
    try:
        with (
            torch.no_grad(),
            _first_use(own, lambda t: places.append((len(order), FreeTensor(*t)))),
        ):
            model.eval()(torch.zeros(1, _in_channels(model), size, size))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    for offset, (at, tensor) in enumerate(places):
        order.insert(at + offset, tensor)
    return order


def fixed_input_size(model: nn.Module) -> int | None:
    """The one resolution a timm model accepts (its pretrained config says so), or None."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return cfg["input_size"][-1] if cfg.get("fixed_input_size") and "input_size" in cfg else None


class _first_use(torch.overrides.TorchFunctionMode):
    """Calls ``found((name, tensor))`` the first time an operation reads one of ``tensors``
    (id -> (name, tensor))."""

    def __init__(self, tensors: dict[int, tuple[str, torch.Tensor]], found) -> None:
        super().__init__()
        self.waiting, self.found = dict(tensors), found

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if self.waiting:
            for arg in torch.utils._pytree.tree_leaves((args, kwargs or {})):
                hit = self.waiting.pop(id(arg), None) if isinstance(arg, torch.Tensor) else None
                if hit is not None:
                    self.found(hit)
        return func(*args, **(kwargs or {}))


def _in_channels(model: nn.Module) -> int:
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    return first.in_channels


@torch.no_grad()
def copy_classifier(ours: nn.Module, theirs: nn.Module) -> bool:
    """Load the reference's classifier into ours when the class counts agree.

    Head for head where both have as many (one, or a distillation head's two); one head into
    both of ours; the two heads of timm's RepViT into our one by folding and averaging them,
    which is what its evaluation computes.
    """
    fcs = [m for m in theirs.get_classifier().modules() if isinstance(m, nn.Linear)]
    if not fcs or fcs[0].out_features != ours.num_classes:
        return False
    mine, outer = ours.get_classifier(), theirs.get_classifier()
    heads = [m for m in outer.modules() if hasattr(m, "fuse") and m is not outer] or [outer]
    targets = [mine.head, mine.head_dist] if isinstance(mine, DistilledClassifier) else [mine]
    if len(heads) == 1 or len(heads) == len(targets):
        for i, target in enumerate(targets):
            _copy_layers(target, heads[min(i, len(heads) - 1)])
        return True
    folded = [h.fuse() for h in heads]
    mine.fc.weight.copy_(torch.stack([h.weight for h in folded]).mean(0))
    mine.fc.bias.copy_(torch.stack([h.bias for h in folded]).mean(0))
    bn = mine.bn  # the identity in eval: (x - 0) / sqrt((1 - eps) + eps) * 1 + 0
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0 - bn.eps)
    bn.weight.fill_(1.0)
    bn.bias.zero_()
    return True


def _copy_layers(ours: nn.Module, theirs: nn.Module) -> None:
    """Copy one classifier's layers (BN, linear) into another's, in module order."""
    a = [m for m in ours.modules() if isinstance(m, LAYERS)]
    b = [m for m in theirs.modules() if isinstance(m, LAYERS)]
    shapes = [[tuple(t.shape) for t in m.state_dict().values()] for m in (*a, *b)]
    if len(a) != len(b) or shapes[: len(a)] != shapes[len(a) :]:
        raise RoadmapError(f"the classifier does not map: {ours} here, {theirs} in the reference")
    for x, y in zip(a, b, strict=True):
        x.load_state_dict(y.state_dict())


def load_state(model: nn.Module, path: str | Path) -> Loaded:
    """``--init PATH``: load every tensor whose name and shape match ours.

    The file is a roadmap checkpoint (its ``model`` weights) or a plain state dict.

    Raises:
        RoadmapError: the file cannot be read, or nothing in it matches this network.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise RoadmapError(f"--init: {path} does not exist") from None
    except Exception as e:
        raise RoadmapError(
            f"--init: {path} is not a readable state dict ({type(e).__name__})"
        ) from None
    state = data.get("model", data) if isinstance(data, dict) else None
    if not isinstance(state, dict):
        raise RoadmapError(f"--init: {path} holds no state dict")
    own = model.state_dict()
    fits = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not any(k.endswith("weight") for k in fits):
        raise RoadmapError(
            f"--init: nothing in {path} fits this network (no tensor with a matching name and "
            "shape); was it saved from another network?"
        )
    model.load_state_dict(fits, strict=False)
    classifier = {f"head.classifier.{n}" for n, _ in model.get_classifier().named_parameters()}
    skipped = sorted(k for k in own if k not in fits and not k.endswith("num_batches_tracked"))
    return Loaded(str(path), len(fits), skipped, classifier.isdisjoint(skipped))
