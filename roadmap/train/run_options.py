"""How a run is run: the options that never change what is trained (nor a recipe's hash).

Training, evaluation and sweeps share :class:`RunOptions`, and open their data through
:func:`open_data` (with ``--download``, rank 0 fetches while the other processes wait).
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from roadmap.arch.selection import Selection
from roadmap.train import distributed
from roadmap.train.data import Datasets, default_workers, load_datasets
from roadmap.train.recipe import Recipe, builtin_recipes, load_recipe
from roadmap.train.sources import DataSource


@dataclass(frozen=True)
class RunOptions:
    """How to run a training or an evaluation.

    Attributes:
        seed: seed of initialization, data order and augmentation.
        workers: data-loader worker processes per training process (None: chosen per source).
        device: ``cpu`` or ``cuda``.
        amp: mixed precision (bfloat16 where supported, else float16 with loss scaling).
        channels_last: NHWC memory format for the model and its inputs; None (the default)
            takes the device's: channels_last on CPU, where it trained every RepViT step 1.3 to
            1.6x faster than contiguous at the `fashion` recipe's shapes
            (``benchmarks/train_cpu.py``); contiguous on CUDA, not measured here.
        compile: ``torch.compile`` the training model.
        quiet: no progress bars or notes.
        resume: continue from the run folder's ``last.pt`` if it matches this run.
        retrain: train a run whose finished record the store holds again (the record is set
            aside, not deleted); without it such a run is refused, so that nothing is retrained
            by accident.
        download: allow a dataset that needs it to download.
        bad_images: ``error`` or ``skip`` for an image that cannot be decoded.
        results: root of the results store.
        command: the command line to record (reconstructed from the arguments if None).
        pretrained: start from timm's published weights for this network (downloads them
            through timm's cache, unless ``pretrained_file`` is given).
        pretrained_file: those weights from a local file in timm's key names instead.
        init: start from this state dict in our own names (a ``last.pt``, or a ``roadmap_*``
            timm model's weights).
        teacher_pretrained: the distillation teacher starts from timm's published weights.
        teacher_checkpoint: the teacher's weights from this file instead.
        log: experiment trackers to write to as well (``tensorboard``, ``wandb``, ``mlflow``:
            :mod:`roadmap.train.tracking`).
        jobs: runs training at once on this machine, this one included (``roadmap run
            --jobs``: :mod:`roadmap.study.parallel`); recorded, since it shares the cores.
    """

    seed: int = 0
    workers: int | None = None
    device: str = "cpu"
    amp: bool = False
    channels_last: bool | None = None
    compile: bool = False
    quiet: bool = False
    resume: bool = False
    retrain: bool = False
    download: bool = False
    bad_images: str = "error"
    results: Path = Path("results")
    command: str | None = None
    pretrained: bool = False
    pretrained_file: str | None = None
    init: Path | None = None
    teacher_pretrained: bool = False
    teacher_checkpoint: Path | None = None
    log: tuple[str, ...] = ()
    jobs: int = 1

    def __post_init__(self) -> None:
        if self.channels_last is None:  # resolved once, so the record says which format ran
            object.__setattr__(self, "channels_last", self.device == "cpu")


def open_data(
    source: DataSource, recipe: Recipe, options: RunOptions, procs: distributed.Processes
) -> Datasets:
    """Open the data; with ``--download`` rank 0 fetches first while the others wait. First,
    on a CPU shared with other work, the threads are fitted to the cores left free
    (:func:`share_the_machine`)."""
    share_the_machine(options, procs)
    if options.download and not procs.primary:
        distributed.barrier(procs)
    data = load_datasets(
        source,
        recipe,
        download=options.download and procs.primary,
        bad_images=options.bad_images,
    )
    if options.download and procs.primary:
        distributed.barrier(procs)
    return data


def share_the_machine(options: RunOptions, procs: distributed.Processes) -> int | None:
    """On a CPU other processes are using, train on the cores they leave free.

    Threads that find their core taken wait, and torch's OpenMP threads wait by spinning: an
    operator measured one epoch of the fashion recipe at over 14 minutes and about 11
    CPU-minutes with two other single-thread torch processes on two cores, where the whole
    3-epoch run takes about a minute on the idle machine (``benchmarks/busy_machine.py``
    measures it here). So when a short look finds fewer free cores than torch has threads,
    torch gets as many threads as there are free cores (at least one), and the run says so.
    Nothing changes on a GPU, under torchrun or ``--jobs`` (their threads are set already), or
    where the user set ``OMP_NUM_THREADS``.

    Returns:
        The thread count it set, or None when it left torch as it was.
    """
    import os
    import sys

    import torch

    from roadmap.measure import host

    if options.device != "cpu" or procs.world > 1 or options.jobs > 1:
        return None
    if "OMP_NUM_THREADS" in os.environ or torch.get_num_threads() < 2:
        return None
    free = host.free_cores()
    if free is None or free > torch.get_num_threads() - 0.5:
        return None
    threads = max(1, round(free))
    if threads < torch.get_num_threads():
        if not options.quiet:
            print(
                f"the machine is busy (other processes use {host.usable_cores() - free:.1f} of "
                f"{host.usable_cores()} cores): training on {threads} thread(s) instead of "
                f"{torch.get_num_threads()}; set OMP_NUM_THREADS to choose",
                file=sys.stderr,
            )
        torch.set_num_threads(threads)
        return threads
    return None


def workers(options: RunOptions, data: Datasets) -> int:
    """Loader workers: the user's choice, else what suits the source."""
    return default_workers(data.source) if options.workers is None else options.workers


def launch_command(args: Sequence[str]) -> str:
    """The command line as it was launched, to record beside a run's results: ``roadmap ARGS``,
    or ``torchrun --nproc_per_node=N -m roadmap ARGS`` under torchrun."""
    launcher = ["roadmap"]
    if "LOCAL_WORLD_SIZE" in os.environ:  # torchrun sets it for every process it starts
        launcher = ["torchrun", f"--nproc_per_node={os.environ['LOCAL_WORLD_SIZE']}", "-m"]
        launcher.append("roadmap")
    return shlex.join([*launcher, *args])


def is_primary_process() -> bool:
    """Whether this is rank 0 (the process that prints), before any process group exists."""
    return os.environ.get("RANK", "0") == "0"


def equivalent_command(selection: Selection, source: DataSource, recipe: Recipe, seed: int) -> str:
    """The ``roadmap train`` command that repeats a run (for runs started from Python)."""
    words = ["roadmap", "train", *shlex.split(selection.cli_args())]
    words += ["--data", source.kind + (f":{source.location}" if source.location else "")]
    words += ["--recipe", recipe.name, "--seed", str(seed)]
    words += ["--epochs", str(recipe.epochs), "--batch-size", str(recipe.batch_size)]
    words += ["--base-lr", repr(recipe.base_lr), "--img-size", str(recipe.img_size)]
    if recipe.name in builtin_recipes():  # any other key that differs from the shipped recipe
        shipped = load_recipe(recipe.name).to_dict()
        for key, value in recipe.to_dict().items():
            if key not in OPTION_KEYS and value != shipped[key]:
                words += ["--set", f"{key}={json.dumps(value)}"]  # JSON is YAML
    return shlex.join(words)


# The recipe keys that have options of their own (and the recipe's name).
OPTION_KEYS = ("name", "epochs", "batch_size", "base_lr", "img_size")
