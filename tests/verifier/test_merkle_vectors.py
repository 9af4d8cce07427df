"""Our Merkle hashing, proofs and verifiers against transparency-dev's RFC 9162 test vectors."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from veridict_verify import merkle

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "rfc9162"
REFERENCE = json.loads((VECTORS / "reference-tree.json").read_text()) if VECTORS.is_dir() else None

# What tests/vectors/rfc9162 holds; a moved or emptied folder must fail the suite, not shrink it.
EXPECTED_INCLUSION_CASES = 98
EXPECTED_CONSISTENCY_CASES = 98
# The happy paths of inclusion/0..4 and consistency/0..4 are all over the reference tree, so each
# also checks our proof generation; the two other happy cases are over made-up hashes.
EXPECTED_HAPPY_CASES_OVER_THE_REFERENCE_TREE = 10


def cases(kind: str) -> list[Path]:
    return sorted((VECTORS / kind).glob("**/*.json"))


def case_id(path: Path) -> str:
    return path.relative_to(VECTORS).as_posix()


def decoded(text: str | None) -> bytes:
    # The vectors write a missing hash as "" and some wrong ones as short base64 strings.
    return base64.b64decode(text) if text else b""


def proof_of(case: dict[str, Any]) -> list[bytes]:
    return [decoded(step) for step in case["proof"] or []]


def reference_leaves() -> list[bytes]:
    assert REFERENCE is not None
    return [merkle.leaf_hash(bytes.fromhex(data)) for data in REFERENCE["leaves_hex"]]


def reference_root(size: int) -> bytes:
    assert REFERENCE is not None
    return bytes.fromhex(REFERENCE["roots_hex_by_size"][size])


def is_reference_size(root: bytes, size: int) -> bool:
    return 0 <= size <= len(reference_leaves()) and root == reference_root(size)


def inclusion_is_over_reference_tree(case: dict[str, Any]) -> bool:
    leaves, index = reference_leaves(), case["leafIdx"]
    return (
        is_reference_size(decoded(case["root"]), case["treeSize"])
        and 0 <= index < len(leaves)
        and decoded(case["leafHash"]) == leaves[index]
    )


def consistency_is_over_reference_tree(case: dict[str, Any]) -> bool:
    return is_reference_size(decoded(case["root1"]), case["size1"]) and is_reference_size(
        decoded(case["root2"]), case["size2"]
    )


def test_the_vector_folder_holds_every_case_we_expect():
    inclusion, consistency = cases("inclusion"), cases("consistency")
    assert len(inclusion) == EXPECTED_INCLUSION_CASES
    assert len(consistency) == EXPECTED_CONSISTENCY_CASES
    assert REFERENCE is not None and len(REFERENCE["leaves_hex"]) == 8
    happy_over_reference = [
        path
        for path in inclusion
        if not (case := json.loads(path.read_text()))["wantErr"]
        and inclusion_is_over_reference_tree(case)
    ] + [
        path
        for path in consistency
        if not (case := json.loads(path.read_text()))["wantErr"]
        and consistency_is_over_reference_tree(case)
    ]
    assert len(happy_over_reference) == EXPECTED_HAPPY_CASES_OVER_THE_REFERENCE_TREE


@pytest.mark.parametrize("size", range(9))
def test_the_root_of_every_reference_prefix_matches(size: int):
    assert merkle.root_from_leaves(reference_leaves()[:size]) == reference_root(size)


@pytest.mark.parametrize("path", cases("inclusion"), ids=case_id)
def test_an_inclusion_vector_is_accepted_or_refused_as_it_says(path: Path):
    case = json.loads(path.read_text())
    index, size, leaf = case["leafIdx"], case["treeSize"], decoded(case["leafHash"])
    root, proof = decoded(case["root"]), proof_of(case)
    if case["wantErr"]:
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(index, size, leaf, proof, root)
        return
    merkle.verify_inclusion(index, size, leaf, proof, root)
    if inclusion_is_over_reference_tree(case):
        generated = merkle.inclusion_proof(
            index, size, merkle.memory_range_hash(reference_leaves())
        )
        assert generated == proof


@pytest.mark.parametrize("path", cases("consistency"), ids=case_id)
def test_a_consistency_vector_is_accepted_or_refused_as_it_says(path: Path):
    case = json.loads(path.read_text())
    size1, size2 = case["size1"], case["size2"]
    root1, root2, proof = decoded(case["root1"]), decoded(case["root2"]), proof_of(case)
    if case["wantErr"]:
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(size1, size2, root1, root2, proof)
        return
    merkle.verify_consistency(size1, size2, root1, root2, proof)
    if consistency_is_over_reference_tree(case):
        generated = merkle.consistency_proof(
            size1, size2, merkle.memory_range_hash(reference_leaves())
        )
        assert generated == proof
