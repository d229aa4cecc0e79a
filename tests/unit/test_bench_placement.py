"""bench's placement policies: ``both`` measures single-client cells pinned and unpinned in
one run; several-process cells are never pinned."""

from __future__ import annotations

from bench.placement import cell_variants, placement_for, split_variant
from bench.workloads import WORKLOADS

CPUS = frozenset({0, 1})


def test_both_gives_a_pinned_and_an_unpinned_cell_for_one_client() -> None:
    assert cell_variants(WORKLOADS["get_seq"], "both") == ["get_seq", "get_seq-unpinned"]
    assert cell_variants(WORKLOADS["patch_8proc"], "both") == ["patch_8proc"]
    assert cell_variants(WORKLOADS["get_seq"], "auto") == ["get_seq"]


def test_each_variant_gets_its_placement() -> None:
    name, policy = split_variant("get_seq", "both")
    assert placement_for(WORKLOADS[name], policy, CPUS).label == "same"
    name, policy = split_variant("get_seq-unpinned", "both")
    assert name == "get_seq" and placement_for(WORKLOADS[name], policy, CPUS).label == "any"
    name, policy = split_variant("patch_8proc", "both")
    assert placement_for(WORKLOADS[name], policy, CPUS).label == "any"
