"""The records committed under results/ still read with today's code, and each one's spec hash
is the hash of the network its name builds today: moving the roadmaps into packages, the
registries and the splits changed no network (a changed hash would file new runs apart from
these and leave them out of every table)."""

from pathlib import Path

import pytest

from roadmap.arch.selection import Selection
from roadmap.arch.spec import spec_hash
from roadmap.results import store
from roadmap.train.recipe import load_recipe, recipe_hash
from tests.helpers import REPO

RECORDS = sorted((REPO / "results").rglob(store.METRICS))


def test_there_are_committed_records() -> None:
    assert len(RECORDS) >= 40  # the 3-seed fashion study and the CPU-defaults rerun


@pytest.mark.parametrize("path", RECORDS, ids=lambda p: str(p.relative_to(REPO / "results")))
def test_a_committed_record_reads_and_its_spec_hash_matches(path: Path) -> None:
    record = store.read_record(path.parent)
    assert record is not None
    if path.parent.name.startswith("seed"):  # in the store's layout (a benchmark kept a copy)
        assert path.parent.name == f"seed{record.seed}"
    network = Selection.from_name(record.name)
    assert spec_hash(network.spec(record.num_classes)) == record.spec_hash
    assert list(network.steps) == list(record.steps)


def test_the_shipped_recipe_the_records_name_still_hashes_alike() -> None:
    hashes = {store.read_record(p.parent).recipe_hash for p in RECORDS}
    assert recipe_hash(load_recipe("fashion")) in hashes
