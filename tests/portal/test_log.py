"""The log explorer: latest checkpoint, batches page by page, a batch's page and its evidence."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from veridict_verify import merkle

from portal.selectors import BATCHES_PER_PAGE
from tests.conftest import missing

pytestmark = pytest.mark.django_db
OPENSSL = Path("/usr/bin/openssl")


def batch_numbers_listed(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'<th scope="row"><a href="/log/batches/(\d+)">', page)]


def test_the_explorer_shows_the_latest_checkpoint_and_the_tree_size_chart(client, filled_log):
    batches = filled_log(3, per_batch=2)
    page = client.get("/log/").content.decode()
    assert batches[-1].checkpoint in page
    assert "Tree size <strong>6</strong>" in page
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="tree-chart"' in page
    assert batch_numbers_listed(page) == [3, 2, 1]


def test_an_empty_log_says_nothing_is_sealed(client, db):
    assert "Nothing has been sealed yet" in client.get("/log/").content.decode()


def test_batches_are_listed_newest_first_page_by_page(client, filled_log):
    count = BATCHES_PER_PAGE + 3
    filled_log(count)
    first = client.get("/log/").content.decode()
    second = client.get("/log/", {"page": 2}).content.decode()
    assert batch_numbers_listed(first) == list(range(count, 3, -1))
    assert batch_numbers_listed(second) == [3, 2, 1]
    assert 'rel="next" href="?page=2#batches"' in first and 'rel="prev"' not in first
    assert 'rel="prev" href="?page=1#batches"' in second and 'rel="next"' not in second
    # Past the end (or nonsense) shows the last or the first page rather than an error.
    assert batch_numbers_listed(client.get("/log/", {"page": 99}).content.decode()) == [3, 2, 1]
    assert batch_numbers_listed(client.get("/log/", {"page": "x"}).content.decode())[0] == count


def test_each_batch_says_which_sources_anchored_it(client, filled_log):
    filled_log(2)
    page = client.get("/log/").content.decode()
    assert page.count('<span class="badge ok">builtin</span>') == 2


def test_a_batch_page_shows_its_header_chain_links_and_a_checked_consistency_proof(
    client, filled_log
):
    batches = filled_log(3, per_batch=3)
    middle = batches[1]
    header = json.loads(bytes(middle.header))
    page = client.get(f"/log/batches/{middle.number}").content.decode()
    assert 'rel="prev" href="/log/batches/1"' in page
    assert 'rel="next" href="/log/batches/3"' in page
    for field in ("root", "prev_root", "prev_header_hash"):
        assert header[field] in page
    assert bytes(middle.header_hash).hex() in page
    assert header["consistency"] and all(step in page for step in header["consistency"])
    assert "checks out" in page
    first = client.get("/log/batches/1").content.decode()
    assert "First batch" in first and 'rel="prev"' not in first
    assert "Latest batch" in client.get("/log/batches/3").content.decode()


def test_an_unknown_batch_is_404(client, db):
    assert client.get("/log/batches/7").status_code == 404


def test_the_downloaded_evidence_verifies_with_openssl(client, filled_log, tsa_ca_pem, tmp_path):
    if not OPENSSL.exists():
        missing("openssl is not installed")
    batch = filled_log(2)[1]
    body = client.get(f"/log/batches/{batch.number}/body.txt")
    tsr = client.get(f"/log/batches/{batch.number}/anchors/builtin.tsr")
    note = client.get(f"/log/batches/{batch.number}/checkpoint.txt")
    assert tsr["Content-Type"] == "application/timestamp-reply"
    assert "attachment" in tsr["Content-Disposition"]
    assert note.content.decode() == batch.checkpoint
    assert batch.checkpoint.startswith(body.content.decode())
    (tmp_path / "body.txt").write_bytes(body.content)
    (tmp_path / "anchor.tsr").write_bytes(tsr.content)
    (tmp_path / "ca.pem").write_bytes(tsa_ca_pem)

    def verify() -> subprocess.CompletedProcess[str]:
        command = "ts -verify -data body.txt -in anchor.tsr -CAfile ca.pem".split()
        return subprocess.run(
            [OPENSSL, *command], capture_output=True, text=True, cwd=tmp_path, check=False
        )

    result = verify()
    assert result.returncode == 0, result.stderr
    assert "Verification: OK" in result.stdout
    # And it is a real check: the body of the other batch does not pass.
    (tmp_path / "body.txt").write_bytes(client.get("/log/batches/1/body.txt").content)
    assert verify().returncode != 0


def test_evidence_of_what_does_not_exist_is_404(client, filled_log):
    filled_log(1)
    assert client.get("/log/batches/1/anchors/freetsa.tsr").status_code == 404
    assert client.get("/log/batches/5/body.txt").status_code == 404
    assert client.get("/log/batches/1/other.txt").status_code == 404


def test_the_consistency_check_on_the_page_uses_the_real_proof(filled_log):
    from portal.selectors import batch_detail

    batches = filled_log(2, per_batch=3)
    detail = batch_detail(number=2)
    header = detail["header"]
    merkle.verify_consistency(
        header["prev_tree_size"],
        header["tree_size"],
        bytes.fromhex(header["prev_root"]),
        bytes(batches[1].root),
        [bytes.fromhex(step) for step in header["consistency"]],
    )
    assert detail["consistency_ok"] is True


def test_the_chart_samples_the_log_evenly_keeping_the_first_and_latest_batch(filled_log):
    from portal.selectors import tree_size_series

    batches = filled_log(12)
    series = tree_size_series(points=5)
    assert len(series) == 5
    assert series[0] == (batches[0].sealed_at, 1)
    assert series[-1] == (batches[-1].sealed_at, 12)
    assert [size for _, size in series] == sorted(size for _, size in series)


def test_an_ethereum_anchor_shows_its_transaction_and_block(client, filled_log):
    from django.utils import timezone

    from timestamping.models import Anchor

    batch = filled_log(1)[0]
    Anchor.objects.create(
        batch=batch,
        type="ethereum",
        backend="sepolia",
        chain_id=11155111,
        tx_hash="0x" + "ab" * 32,
        block_number=4242,
        block_hash="0x" + "cd" * 32,
        block_time=timezone.now(),
        anchored_at=timezone.now(),
    )
    page = client.get(f"/log/batches/{batch.number}").content.decode()
    assert "11155111" in page and "0x" + "ab" * 32 in page and "4242" in page
    assert client.get(f"/log/batches/{batch.number}/anchors/sepolia.tsr").status_code == 404
