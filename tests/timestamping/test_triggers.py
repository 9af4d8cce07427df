"""On PostgreSQL the ledger tables refuse UPDATE, DELETE and TRUNCATE; tamper tests bypass that."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction
from veridict_verify.receipt import receipt_verify

from timestamping import keys, selectors
from timestamping.models import Anchor, Batch, Entry, LogKey, Tile
from timestamping.services import entry_append

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

LEDGER_MODELS = [Entry, Tile, Batch, LogKey, Anchor]
# A forgery per table: the column a tamperer would change, and the value.
FORGERIES = {
    Entry: ("kind", "forged"),
    Tile: ("hashes", bytes(32)),
    Batch: ("root", bytes(32)),
    LogKey: ("verifier_key", "forged"),
    Anchor: ("tsa", "forged"),
}
TABLES = [model._meta.db_table for model in LEDGER_MODELS]


def snapshot() -> dict[str, list[tuple]]:
    """Every row of every ledger table, to show a refused statement changed nothing."""
    return {
        model._meta.db_table: [
            tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
            for row in model.objects.order_by("pk").values_list()
        ]
        for model in LEDGER_MODELS
    }


@pytest.fixture
def sealed_log(seal) -> list[Entry]:
    entries = [entry_append(kind="test", envelope={"n": n})[0] for n in range(3)]
    seal()
    for model in LEDGER_MODELS:
        assert model.objects.exists(), f"the sealed log has no {model.__name__} row to protect"
    with connection.cursor() as cursor:
        # The rows were written in this test's own transaction (`db` never commits), so their
        # deferred foreign-key checks are still queued, and PostgreSQL refuses any TRUNCATE with
        # "pending trigger events" before our trigger runs. Checking them now is what a commit does.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    return entries


def refused(sql: str, params: list[object] | None = None) -> IntegrityError:
    """Runs a statement that must be refused, in a savepoint so that the test can go on."""
    with pytest.raises(IntegrityError) as caught, transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
    return caught.value


@pytest.mark.parametrize("model", LEDGER_MODELS, ids=TABLES)
def test_update_delete_and_truncate_of_a_ledger_table_are_refused_naming_the_table(
    sealed_log, model
):
    table = connection.ops.quote_name(model._meta.db_table)
    column, forged = FORGERIES[model]
    before = snapshot()
    statements = {
        "UPDATE": (f"UPDATE {table} SET {connection.ops.quote_name(column)} = %s", [forged]),
        "DELETE": (f"DELETE FROM {table}", None),
        # CASCADE, the most that TRUNCATE can wipe (anchors with their batches); a plain TRUNCATE
        # of a table that a foreign key references fails on that key before any trigger runs.
        "TRUNCATE": (f"TRUNCATE {table} CASCADE", None),
    }
    for operation, (sql, params) in statements.items():
        error = refused(sql, params)
        assert f"{operation} on {model._meta.db_table} refused" in str(error), error
        assert "append-only" in str(error)
    assert snapshot() == before


def test_appending_and_sealing_go_on_beside_the_triggers(sealed_log, seal, tsa_ca_pem):
    refused(f"DELETE FROM {Entry._meta.db_table}")
    (entry,) = [entry_append(kind="test", envelope={"n": "after"})[0]]
    batch = seal()
    assert batch.number == 2 and batch.tree_size == 4
    report = receipt_verify(
        selectors.receipt_get(entry=entry), keys=[keys.verifier_key()], tsa_ca_pem=tsa_ca_pem
    )
    assert report.ok, report.steps


def test_a_tamper_test_lifts_the_triggers_with_session_replication_role_and_is_caught(
    sealed_log, tsa_ca_pem
):
    entry = sealed_log[1]
    forged = bytes(entry.canonical).replace(b'"n":1', b'"n":7')
    assert forged != bytes(entry.canonical)
    with connection.cursor() as cursor:
        # The bypass every tamper test uses: replica mode skips ordinary triggers on this
        # connection. The `db` fixture's transaction rolls the SET back with the forgery.
        cursor.execute("SET session_replication_role = replica")
        cursor.execute(
            f"UPDATE {Entry._meta.db_table} SET canonical = %s WHERE seq = %s",
            [forged, entry.seq],
        )
        assert cursor.rowcount == 1
    entry.refresh_from_db()
    assert bytes(entry.canonical) == forged
    report = receipt_verify(
        selectors.receipt_get(entry=entry), keys=[keys.verifier_key()], tsa_ca_pem=tsa_ca_pem
    )
    assert report.failed is not None and report.failed.name == "leaf", report.steps
