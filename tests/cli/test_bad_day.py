"""The inputs and faults that used to end in a traceback, a hang or a silent wrong answer."""

from __future__ import annotations

import builtins
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from roadmap.arch import registry
from roadmap.cli import app
from roadmap.results import store
from roadmap.train import checkpoint
from roadmap.train.recipe import load_recipe, recipe_hash
from roadmap.util import files
from tests.helpers import REPO, fails_in_one_line, make_record, store_record

runner = CliRunner()
GELU = ["mobilenetv3_large", "gelu"]


def table_json(*args: object) -> tuple[dict, str]:
    """``roadmap table ... --format json``: the parsed stdout, and what went to stderr."""
    result = runner.invoke(app, ["table", "--no-latency", "--format", "json", *map(str, args)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result.stderr


# --- records that do not read ----------------------------------------------------------------


DAMAGE = {
    "wrong-typed field": lambda data: {**data, "top1": "abc"},
    "a JSON list": lambda data: [data],
    "incomplete": lambda data: {k: v for k, v in data.items() if k != "top5"},
    "newer format": lambda data: {**data, "format": "roadmap-record/99"},
}
SAYS = {
    "wrong-typed field": "top1: must be a finite number, got 'abc'",
    "a JSON list": "not a run record: a JSON list",
    "incomplete": "top5: missing",
    "newer format": "written by a newer roadmap (roadmap-record/99",
}


@pytest.mark.parametrize("damage", [*DAMAGE, "invalid JSON"])
def test_a_damaged_record_is_named_and_the_table_still_prints(tmp_path: Path, damage: str):
    good = store_record(tmp_path, make_record(["mobilenetv3_large"], 0, 80.0))
    bad = store_record(tmp_path, make_record(GELU, 0, 90.0)) / store.METRICS
    data = json.loads(bad.read_text())
    bad.write_text("{not json" if damage == "invalid JSON" else json.dumps(DAMAGE[damage](data)))
    table, notes = table_json("--upto", "gelu", "--data", "digits", "--recipe", "quick",
                              "--results", tmp_path)  # fmt: skip
    assert [r["top1"] for r in table["rows"]] == [80.0, None]  # the good one still shows
    says = SAYS.get(damage, "not valid JSON")
    assert f"skipped {bad}: " in notes and says in notes, notes
    assert good.exists()


def test_run_status_and_run_name_a_damaged_record(tmp_path: Path) -> None:
    folder = store_record(tmp_path, make_record(["mobilenetv3_large"], 0, 80.0, img_size=32))
    metrics = folder / store.METRICS
    metrics.write_text(metrics.read_text().replace('"top1": 80.0', '"top1": "abc"'))
    args = ["run", "--upto", "mobilenetv3_large", "--data", "digits", "--recipe", "quick"]
    status = runner.invoke(app, [*args, "--status", "--results", str(tmp_path)])
    assert status.exit_code == 0 and "unreadable" in status.stdout, status.output
    assert "top1: must be a finite number" in status.stdout


def test_reading_the_store_needs_no_write_access(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`table` and `run --status` on a store they may not write: nothing is opened for
    writing, locked for writing, created or cleaned up there (here any attempt fails)."""
    quick = recipe_hash(load_recipe("quick"))
    store_record(tmp_path, make_record(GELU, 0, 90.0, recipe_hash=quick))
    interrupted = store.RunKey("digits", "quick", "mobilenetv3_large", 0).folder(tmp_path)
    interrupted.mkdir(parents=True)
    (interrupted / store.CHECKPOINT).write_bytes(b"")  # a run that never finished,
    interrupted.with_name("seed0.lock").write_text("")  # and its lock file
    root = str(tmp_path)
    real_open, real_os_open = builtins.open, os.open

    def guarded_open(file, mode="r", *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if any(c in mode for c in "wax+") and str(file).startswith(root):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, mode, *args, **kwargs)

    def guarded_os_open(path, flags, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        writing = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        if writing and str(path).startswith(root):
            raise PermissionError(13, "Permission denied", str(path))
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(os, "open", guarded_os_open)
    table, _ = table_json("--upto", "gelu", "--data", "digits", "--recipe", "quick",
                          "--results", tmp_path)  # fmt: skip
    assert table["rows"][1]["top1"] == 90.0
    status = runner.invoke(
        app, ["run", "--upto", "gelu", "--data", "digits", "--status", "--results", root]
    )
    assert status.exit_code == 0, status.output
    assert "done" in status.stdout and "interrupted" in status.stdout


def test_an_interrupted_run_shows_as_such(tmp_path: Path) -> None:
    folder = store.RunKey("digits", "quick", "gelu", 0).folder(tmp_path)
    folder.mkdir(parents=True)
    (folder / store.CHECKPOINT).write_bytes(b"")
    (folder / store.RECIPE).write_text("epochs: 8\n")
    (folder / store.LOG).write_text('{"epoch": 1}\n')
    store_record(tmp_path, make_record(["mobilenetv3_large"], 0, 80.0))
    table, notes = table_json("--upto", "gelu", "--data", "digits", "--recipe", "quick",
                              "--results", tmp_path)  # fmt: skip
    assert table["rows"][1]["unfinished"] == ["seed 0: interrupted at epoch 1/8, --resume"]
    assert "gelu seed 0: interrupted at epoch 1/8, --resume" in notes
    rich = runner.invoke(app, ["table", "--upto", "gelu", "--data", "digits", "--recipe",
                               "quick", "--results", str(tmp_path), "--no-latency"])  # fmt: skip
    assert "interrupted at epoch 1/8, --resume" in rich.stdout


# --- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["explain", "seperate_mixers"], "unknown step 'seperate_mixers' in roadmap 'repvit' "
         "(did you mean 'separate_mixers'?)"),
        (["train", "--data", "digit"], "unknown data source 'digit' (did you mean 'digits'?)"),
        (["train", "--recipe", "quik"], "no recipe 'quik' (did you mean 'quick'?)"),
        (["build", "--size", "m1_6"], "unknown size 'm1_6' (did you mean 'm1_5'?)"),
        (["run", "--seeds", "0,0"], "--seeds: seed 0 is listed twice"),
        (["run", "--seeds", "-1"], "--seeds: a seed is a whole number from 0 to"),
    ],
)  # fmt: skip
def test_a_mistyped_name_says_what_was_meant(args: list[str], says: str) -> None:
    fails_in_one_line(args, says)


def test_an_unknown_store_label_lists_what_the_store_holds(tmp_path: Path) -> None:
    store_record(tmp_path, make_record(GELU, 0, 90.0))
    fails_in_one_line(
        ["table", "--recipe", "quik", "--results", tmp_path, "--no-latency"],
        "holds no runs of digits/quik (did you mean 'digits/quick'?); it holds: digits/quick",
    )
    fails_in_one_line(
        ["table", "--data", "cifar10", "--results", tmp_path / "empty", "--no-latency"],
        "holds no finished runs yet",
    )


def without_torch(*commands: list[str]) -> tuple[list[str], str]:
    """Run each command line in one fresh Python process as the console script would; what
    heavy modules were imported by the end (none expected), and stderr, with a line ``exit
    CODE`` after each command."""
    code = (
        "import sys\n"
        "from roadmap.cli import main\n"
        f"for argv in {[list(map(str, c)) for c in commands]!r}:\n"
        "    sys.argv = ['roadmap', *argv]\n"
        "    try:\n        main()\n"
        "    except SystemExit as e:\n"
        "        print('exit', e.code, file=sys.stderr)\n"
        "print(' '.join(m for m in ('torch', 'timm', 'fvcore') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    return result.stdout.split(), result.stderr


def test_a_mistyped_name_is_refused_before_torch_loads() -> None:
    """Names are checked by light modules: the error comes before torch, timm and fvcore are
    imported (the start-up benchmark times it)."""
    loaded, stderr = without_torch(["build", "--upto", "seperate_mixers"])
    assert loaded == [], stderr
    assert "did you mean 'separate_mixers'" in stderr and "exit 2" in stderr


# A mistake in a spec of each roadmap, and what the checker says about it.
SPEC_MISTAKES = {
    "repvit": ("stem.0", "kernel_size", 3, 4, "stem.0: kernel_size must be odd, got 4"),
    "convnext": ("stem.0", "stride", 4, 3, "stride must equal kernel_size (4)"),
    "visformer": ("stages.0.blocks.0", "heads", 6, 7, "7 heads do not divide the width"),
}


def test_a_spec_mistake_is_refused_before_torch_loads(tmp_path: Path) -> None:
    """A kind's declaration (fields, checks, diagram) imports no torch; its layers are built
    through ``lazy``: so a spec of any roadmap, the RepVGG example's included, is checked
    and refused in the time Python takes to start (it took 6-9 s when the kinds imported
    torch)."""
    paths = []
    for name, (where, key, good, bad, _) in SPEC_MISTAKES.items():
        data = registry.build_spec(None, roadmap=name).to_dict()
        node = data
        for part in where.split("."):
            node = node[int(part)] if part.isdigit() else node[part]
        fields = node if key in node else node["extra"]
        assert fields[key] == good, (name, fields)
        fields[key] = bad
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(data))
    repvgg = REPO / "examples" / "repvgg_roadmap"
    (tmp_path / "repvgg.yaml").write_text(
        "stem: [{kind: repvgg, out_channels: 48, stride: 2, extra: {identity: maybe}}]\n"
        "stages: [{blocks: [{kind: repvgg, out_channels: 48}]}]\n"
    )
    runs = [["build", "--spec", path] for path in paths]
    plugin = ["--plugin", repvgg / "repvgg_roadmap"]
    runs.append([*plugin, "build", "--spec", tmp_path / "repvgg.yaml"])
    loaded, stderr = without_torch(*runs)
    assert loaded == [], stderr
    for _, _, _, _, says in SPEC_MISTAKES.values():
        assert says in stderr
    assert "stem.0.extra.identity: must be true or false, got 'maybe'" in stderr
    assert stderr.count("exit 2") == len(runs), stderr  # a usage error, each


# --- specs, plugins, disks, temporary files ----------------------------------------------------


def test_a_huge_spec_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("# " + "x" * (2 << 20) + "\n")
    started = time.perf_counter()
    fails_in_one_line(["build", "--spec", path], "a spec file is at most 1,048,576")
    assert time.perf_counter() - started < 30  # it used to run for minutes


@pytest.mark.slow  # over 1 s: the full suite runs it
def test_a_spec_with_a_thousand_stages_is_refused(tmp_path: Path) -> None:
    spec = registry.build_spec("gelu", roadmap="repvit").to_dict()
    spec["stages"] = spec["stages"][1:2] * 1000
    path = tmp_path / "deep.json"
    path.write_text(json.dumps(spec))
    fails_in_one_line(["build", "--spec", path], "a network has 1 to 16 stages, this one 1,000")


def test_a_plugin_that_exits_is_an_error(tmp_path: Path) -> None:
    plugin = tmp_path / "quits.py"
    plugin.write_text("raise SystemExit(0)\n")
    try:
        fails_in_one_line(
            ["--plugin", plugin, "steps"], "it called exit(0), which would end roadmap"
        )
    finally:
        for name in [m for m in sys.modules if m.startswith("roadmap_plugin_")]:
            del sys.modules[name]


def test_a_full_disk_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch's writer reports a full disk as "[enforce fail ...] unexpected pos"; the user
    reads which file system is full and which file was being written."""

    def full_disk_save(state: object, handle: object) -> None:
        handle.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full_disk_save)
    full = SimpleNamespace(total=10**12, free=0)
    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: full)
    target = tmp_path / "run" / "last.pt"
    with pytest.raises(Exception, match=f"no space left on .* while writing {target}"):
        checkpoint.save({"model": {}}, target)
    assert list(target.parent.iterdir()) == []  # nothing half-written


def test_every_temporary_file_of_ours_goes_under_the_lock(tmp_path: Path) -> None:
    folder = tmp_path / "seed0"
    folder.mkdir()
    ours = folder / f"{files.TEMP_MARK}not-our-pattern"  # an older writer's, or a hand copy
    theirs = folder / "notes.txt"
    ours.write_text("")
    theirs.write_text("")
    assert files.remove_stale(folder) == []  # without the lock, only dead writers' files go
    with store.run_lock(folder):
        pass
    assert not ours.exists() and theirs.exists()


# --- output -----------------------------------------------------------------------------------


@pytest.mark.slow  # over 1 s: the full suite runs it
def test_tables_outside_a_terminal_never_cut_a_number() -> None:
    """A log, CI or a pipe gets every column whole, however wide (COLUMNS is 120 here)."""
    result = runner.invoke(app, ["table", "--steps", "mobilenetv3_large,gelu,expansion_2,widen",
                                 "--no-latency"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    assert "73.0" in result.stdout and "0.91" in result.stdout  # the paper's control, whole


@pytest.mark.slow  # over 1 s: the full suite runs it
def test_long_steps_say_what_they_are_doing() -> None:
    result = runner.invoke(app, ["table", "--upto", "gelu", "--no-latency"])
    assert "counting 2 networks" in result.stderr
    explained = runner.invoke(app, ["explain", "gelu", "--no-latency", "--markdown"])
    assert "explaining gelu" in explained.stderr


# --- recipe values timm or the data would refuse (issue: bad day III) --------------------------


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        (["--set", "optimizer=bogus"], "key 'optimizer': timm has no optimizer 'bogus'"),
        (["--set", "auto_augment=garbage"], "key 'auto_augment' (garbage): timm refuses it"),
        (["--set", "auto_augment=rand-m999-n999"], "m is at most 30"),
        (["--set", "auto_augment=rand-m9-n50"], "n is at most 10"),
        (["--set", "batch_size=100000000"], "key 'batch_size' is out of range: 100000000"),
        (["--teacher", "resnet18"], "key 'teacher' (resnet18) has no effect without distillation"),
        (["--set", "train_subset=3"], "key 'train_subset' (3) must be at least the number of"),
    ],
)
def test_a_recipe_value_timm_or_the_data_would_refuse_is_one_line(
    settings: list[str], says: str, tmp_path: Path
) -> None:
    """Each was a traceback, a silent no-op or a minutes-long epoch; now one line naming the
    key, before any network is built (train_subset: as soon as the classes are known), and no
    run folder is left behind."""
    args = ["train", "--upto", "gelu", "--data", "digits", "--results", tmp_path, *settings]
    fails_in_one_line(args, says)
    assert not any(tmp_path.rglob("*")), list(tmp_path.rglob("*"))


def test_a_failed_start_leaves_no_run_folder(tmp_path: Path) -> None:
    """A teacher checkpoint that is no checkpoint fails before the first epoch: one line naming
    the file, and nothing in the results folder (it used to keep a folder holding a lock)."""
    bad = tmp_path / "teacher.pth"
    bad.write_text("not a checkpoint")
    results = tmp_path / "results"
    args = ["train", "--upto", "gelu", "--data", "synthetic:16", "--epochs", "1", "--set",
            "img_size=32", "--batch-size", "8", "--distillation", "hard", "--teacher",
            "test_resnet", "--teacher-checkpoint", bad, "--results", results]  # fmt: skip
    fails_in_one_line(args, str(bad))
    assert not results.exists() or not any(results.rglob("*")), list(results.rglob("*"))


# --- a record is a claim to be checked ----------------------------------------------------------


def _edit_record(folder: Path, **changes: object) -> None:
    path = folder / store.METRICS
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, **changes}))


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"top1": 500.0}, "top1: 500.0 is not a percentage (0 to 100)"),
        ({"best_top1": -5.0}, "best_top1: -5.0 is not a percentage"),
        ({"seed": 7}, "says seed 7 but is filed under seed0/"),
        ({"top1": "NaN"}, "top1"),
        ({"format": "roadmap-record/99"}, "written by a newer roadmap"),
    ],
)
def test_a_store_whose_only_record_is_unreadable_names_the_file(
    changes: dict, says: str, tmp_path: Path
) -> None:
    folder = store_record(tmp_path, make_record(GELU, 0, 90.0))
    _edit_record(folder, **changes)
    with pytest.raises(store.UnreadableRecord, match=says.replace("(", r"\(").replace(")", r"\)")):
        store.read_record(folder)
    fails_in_one_line(
        ["table", "--upto", "gelu", "--recipe", "quick", "--results", tmp_path, "--no-latency"],
        f"holds no run record this version can read: {folder / store.METRICS}",
    )


def test_a_stale_record_is_explained_not_suggested_again(tmp_path: Path) -> None:
    """A record whose spec hash no longer matches its name's network drops out of the table;
    the table says which one and why, and does not suggest the very command just run."""
    store_record(tmp_path, make_record(GELU, 0, 90.0, spec_hash="0123456789ab"))
    args = ["table", "--upto", "gelu", "--results", str(tmp_path), "--no-latency"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "digits/quick/gelu/seed0: trained on another spec (its hash 0123456789ab" in said
    assert "Show one with: roadmap table --data digits --recipe quick" not in said
    assert "no trained results yet for digits / quick" in said


def test_a_run_filed_under_a_changed_recipe_is_named_in_the_table(tmp_path: Path) -> None:
    """`train --recipe fashion --epochs 1` files its run as fashion-<hash>: `table --recipe
    fashion` says so, with the label, in the table itself (its caption) and as a note."""
    store_record(tmp_path, make_record(GELU[:1], 0, 80.0, recipe="fashion"))
    store_record(tmp_path, make_record(GELU, 0, 90.0, recipe="fashion-1a2b3c4d5e6f"))
    args = ["table", "--upto", "gelu", "--recipe", "fashion", "--results", str(tmp_path),
            "--no-latency"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    said = " ".join(result.output.split())
    assert said.count("--recipe fashion-1a2b3c4d5e6f") == 2, said  # the caption and the note


def test_a_plugin_calling_os_exit_at_import_is_an_error(tmp_path: Path, restore_registry) -> None:
    """os._exit ends a process past every try: the plugin's import turns it into one line
    naming the plugin (it used to end `roadmap` with exit 0 and no output)."""
    plugin = tmp_path / "quits.py"
    plugin.write_text("import os\nos._exit(0)\n")
    fails_in_one_line(["--plugin", plugin, "steps"], "it called os._exit(0)")
    assert os._exit.__module__ == "posix"  # put back


def test_a_slow_plugin_is_named_while_it_imports(tmp_path: Path) -> None:
    plugin = tmp_path / "slow.py"
    plugin.write_text("import time\ntime.sleep(0.6)\n")
    code = (
        "import sys\nfrom roadmap.arch import registry\nfrom roadmap.util import registry as r\n"
        "r.WATCHDOG_S = 0.2\n"
        f"registry.load_plugin({str(plugin)!r})\nprint('loaded')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert result.stdout.strip() == "loaded"  # a watchdog's word, not a kill
    assert f"plugin {plugin} is still importing after 0.2 s" in result.stderr


# --- a spec cannot take the machine down --------------------------------------------------------


@pytest.mark.slow  # over 1 s: the full suite runs it
def test_a_spec_too_big_for_the_machine_is_refused_before_allocation(tmp_path: Path) -> None:
    """1,017 ConvNeXt blocks 2,048 wide pass every range check but need ~34 G parameters: the
    meta-device count refuses them, naming the numbers, in seconds and without allocating
    (it used to allocate until the kernel's OOM killer came)."""
    from roadmap.arch.edit import set_depths, set_widths
    from roadmap.arch.selection import Selection

    spec = Selection.of("convnext").spec()
    set_depths(set_widths(spec, (2048,) * 4), (1, 1, 1014, 1)).save(tmp_path / "huge.yaml")
    started = time.perf_counter()
    fails_in_one_line(
        ["build", "--spec", tmp_path / "huge.yaml"],
        "this network needs 34,298,168,296 parameters (137.2 GB), more than the",
    )
    assert time.perf_counter() - started < 60


def test_an_expansion_past_any_width_is_refused(tmp_path: Path) -> None:
    from roadmap.arch.selection import Selection

    data = Selection.of("repvit").spec().to_dict()
    data["stages"][0]["blocks"][0]["expand_ratio"] = 1e6
    (tmp_path / "wide.json").write_text(json.dumps(data))
    fails_in_one_line(
        ["build", "--spec", tmp_path / "wide.json"],
        "stages.0.blocks.0: expand_ratio 1e+06 makes a hidden width of 48,000,000; at most 65,536",
    )


def test_out_of_memory_names_only_the_options_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """An allocator failure lists the size options the user typed, not defaults never given."""
    from roadmap.cli import arch

    def no_memory(*_args: object, **_kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr(arch, "_every_step_alone", no_memory)
    result = CliRunner().invoke(app, ["latency", "--upto", "gelu", "--img-size", "512"])
    assert result.exit_code == 2
    assert "(--img-size 512)" in result.output and "--num-classes 1000" not in result.output


def test_an_empty_stage_is_named_with_its_file_and_path(tmp_path: Path) -> None:
    from roadmap.arch.selection import Selection

    data = Selection.of("repvit").spec().to_dict()
    data["stages"][1] = {"downsample": [], "blocks": []}
    (tmp_path / "empty.json").write_text(json.dumps(data))
    fails_in_one_line(
        ["build", "--spec", tmp_path / "empty.json"],
        f"{tmp_path / 'empty.json'}: stages.1: a stage has neither downsample layers nor blocks",
    )


def test_a_file_system_that_refuses_is_not_called_full(tmp_path: Path) -> None:
    """/proc has no free space because it has no space at all: writing there is refused, and
    the message says so instead of 'no space left on /proc'."""
    fails_in_one_line(
        ["build", "--upto", "gelu", "--save-spec", "/proc/roadmap-test.yaml"],
        "cannot write /proc/roadmap-test.yaml",
    )


# --- nothing retrained by accident; a busy machine shared --------------------------------------


@pytest.mark.slow  # a training behaviour the full suite checks; the fast tier trains once elsewhere
def test_training_a_finished_run_again_needs_retrain(tmp_path: Path) -> None:
    """`train` on a run the store holds finished used to retrain it silently and set the old
    record aside; now it says where the run is, and --retrain trains it again."""
    args = ["train", "--upto", "gelu", "--data", "synthetic:16", "--epochs", "1", "--set",
            "img_size=32", "--batch-size", "8", "--quiet", "--results", tmp_path]  # fmt: skip
    runner = CliRunner()
    assert runner.invoke(app, [str(a) for a in args]).exit_code == 0
    (record,) = tmp_path.rglob(store.METRICS)
    fails_in_one_line(args, f"{record.parent} already holds this run's record")
    assert runner.invoke(app, [str(a) for a in args] + ["--retrain"]).exit_code == 0
    assert len(list(tmp_path.rglob(store.METRICS))) == 2  # the first one set aside, not lost


def test_on_a_busy_machine_training_takes_the_free_cores(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from roadmap.measure import host
    from roadmap.train import distributed
    from roadmap.train.run_options import RunOptions, share_the_machine

    procs = distributed.Processes(rank=0, world=1, device=torch.device("cpu"))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(host, "free_cores", lambda: 0.3)
        assert share_the_machine(RunOptions(), procs) == 1 and torch.get_num_threads() == 1
        assert "training on 1 thread(s) instead of 2" in capsys.readouterr().err
        torch.set_num_threads(2)
        monkeypatch.setattr(host, "free_cores", lambda: 1.9)  # free: nothing changes
        assert share_the_machine(RunOptions(), procs) is None and torch.get_num_threads() == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user chose: nothing changes
        monkeypatch.setattr(host, "free_cores", lambda: 0.0)
        assert share_the_machine(RunOptions(), procs) is None
    finally:
        torch.set_num_threads(before)
