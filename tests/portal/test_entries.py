"""An entry's page: its inclusion path drawn as SVG, checked against the proof and the root."""

from __future__ import annotations

import re

import pytest
from veridict_verify import merkle

from tests.audit.conftest import AISystemFactory
from timestamping import selectors
from timestamping.models import Entry
from timestamping.services import entry_append

pytestmark = pytest.mark.django_db

NODE = re.compile(r'<g class="node [^"]*" data-role="([a-z ]+)" data-hash="([0-9a-f]{64})">')


def svg_nodes(page: str) -> list[tuple[str, str]]:
    svg = page[page.index('<svg xmlns="http://www.w3.org/2000/svg" class="inclusion-path"') :]
    svg = svg[: svg.index("</svg>")]
    return NODE.findall(svg)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 11])
def test_the_drawn_path_is_the_receipt_proof_from_leaf_to_checkpoint_root(client, seal, size):
    entries = [entry_append(kind="test", envelope={"n": n})[0] for n in range(size)]
    batch = seal()
    for entry in entries:
        receipt = selectors.receipt_get(entry=entry)
        proof = [bytes.fromhex(step) for step in receipt["proof"]["inclusion"]]
        page = client.get(f"/log/entries/{entry.uuid}").content.decode()
        nodes = svg_nodes(page)
        roles = [role for role, _ in nodes]
        hashes = {role: [h for r, h in nodes if r == role] for role in set(roles)}
        # The siblings drawn are the proof's hashes, in order from the leaf up.
        assert [bytes.fromhex(h) for h in hashes.get("sibling", [])] == proof
        assert hashes["leaf"] == [bytes(entry.leaf_hash).hex()]
        assert hashes["root"] == [bytes(batch.root).hex()]
        # Each node on the path is the hash of the one below with its sibling.
        node = bytes(entry.leaf_hash)
        index, last = receipt["proof"]["leaf_index"], size - 1
        drawn_path = [bytes.fromhex(h) for h in hashes.get("path", [])]
        for level, sibling in enumerate(proof):
            on_left = index & 1 or index == last
            node = merkle.node_hash(sibling, node) if on_left else merkle.node_hash(node, sibling)
            if level < len(proof) - 1:
                assert drawn_path[level] == node
            if on_left:
                while not index & 1 and index:
                    index, last = index >> 1, last >> 1
            index, last = index >> 1, last >> 1
        assert node == bytes(batch.root)
        assert "The path leads to the checkpoint" in page
        assert f"/verify/receipt?entry={entry.uuid}" in page
        assert f"/api/v1/entries/{entry.uuid}/receipt" in page


def test_an_entry_not_sealed_yet_has_no_path_but_its_page(client, db):
    entry, _ = entry_append(kind="test", envelope={"n": 1})
    page = client.get(f"/log/entries/{entry.uuid}").content.decode()
    assert "not sealed yet" in page
    assert "inclusion-path" not in page


def test_entries_of_a_private_system_are_not_shown_to_exist(client, seal):
    from audit.services.documents import document_register

    hidden = AISystemFactory(is_public=False)
    document, _ = document_register(system=hidden, sha256="cd" * 32)
    seal()
    assert client.get(f"/log/entries/{document.entry.uuid}").status_code == 404


def test_a_malformed_or_unknown_entry_id_is_404(client, db):
    assert client.get("/log/entries/not-a-uuid").status_code == 404
    assert client.get("/log/entries/6f1c1c9e-58f8-4d1b-9a4e-0d1d2f3c4b5a").status_code == 404
    assert not Entry.objects.exists()
