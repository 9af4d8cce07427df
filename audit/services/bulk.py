"""Recording many decisions at once: one durable transaction for every good record of a request."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import JSONField, Model
from django.utils import timezone

from audit import vault
from audit.models import AISystem, Decision, ModelVersion, Subject
from audit.services.decisions import (
    decision_envelope,
    decision_lookups,
    decision_personal_seal,
    model_version_register,
    request_digest,
)

# The context a subject's wrapped key is bound to: it must be the one subject_key unwraps with.
from audit.services.subjects import subject_key, subject_key_context
from bias.services import counts_decisions_add
from review.services.intake import (
    Intake,
    IntakeContext,
    PolicyRejected,
    intake_context,
    intake_evaluate,
    intake_store,
)
from timestamping import keys
from timestamping.models import Entry
from timestamping.services.entries import entry_build, seq_lock_share

BULK_MAX_RECORDS = 10_000
# Rows per INSERT and values per IN (...): well under every backend's parameter limit.
CHUNK = 1_000
# A concurrent request that takes a key, id or subject first makes the transaction fail on a
# unique constraint; the next attempt finds its rows and answers those records as replays.
ATTEMPTS = 3
DEADLOCK = "40P01"


@dataclass
class BulkItem:
    """One record of a bulk request after validation: its data, or why it was refused."""

    index: int
    data: dict[str, Any] | None = None
    idempotency_key: str | None = None
    error: dict[str, Any] | None = None


@dataclass
class BulkResult:
    index: int
    status: int
    id: str | None = None
    leaf_hash: str | None = None
    error: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"index": self.index, "status": self.status}
        if self.error is not None:
            answer["error"] = self.error
        else:
            answer["id"] = self.id
            answer["leaf_hash"] = self.leaf_hash
        return answer


def record_error(
    code: str, message: str, fields: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """A record's error, shaped like the API's error body (veridict/api_errors.py)."""
    return {"code": code, "message": message, "fields": fields or {}}


def _conflict(name: str) -> dict[str, Any]:
    message = f"{name} was already used for a different request"
    return record_error("conflict", message, {name: [message]})


class BulkContention(Exception):
    """Concurrent requests kept changing the rows this one read: the caller answers 503."""


class _Retry(Exception):
    """A row read before the transaction changed under it: start the attempt again."""


@dataclass
class _New:
    """A record that will become a decision in this request."""

    position: int
    item: BulkItem
    data: dict[str, Any]
    digest: bytes
    lookup: bytes
    supersedes: Decision | None
    # The decision's own lookups: its client id's and its Idempotency-Key's keyed hashes.
    decision_lookups: tuple[bytes, bytes | None]
    entry: Entry | None = None
    decision: Decision | None = None
    intake: Intake | None = None


@dataclass
class _Plan:
    """What one attempt found: each record's fate, and the rows to write."""

    results: list[BulkResult | None]
    new: list[_New] = field(default_factory=list)
    # A replay of a record earlier in this body: (its position, the earlier record's position).
    replays: list[tuple[int, int]] = field(default_factory=list)
    review: IntakeContext | None = None


def _chunks(values: Iterable[Any]) -> Iterator[list[Any]]:
    values = list(values)
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def _answered(decision: Decision, index: int, status: int = 200) -> BulkResult:
    entry = decision.entry
    return BulkResult(index, status, id=str(entry.uuid), leaf_hash=bytes(entry.leaf_hash).hex())


def _stored_decisions(
    system: AISystem, field_name: str, values: set[bytes]
) -> dict[bytes, Decision]:
    """The stored decisions under these lookups (client id or Idempotency-Key hashes)."""
    found: dict[bytes, Decision] = {}
    for chunk in _chunks(values):
        rows = (
            Decision.objects.filter(system=system, **{f"{field_name}__in": chunk})
            .select_related("entry")
            .only(
                "idempotency_lookup",
                "client_id_lookup",
                "request_digest",
                "entry__uuid",
                "entry__leaf_hash",
            )
        )
        found.update((bytes(getattr(row, field_name)), row) for row in rows)
    return found


def _supersede_targets(system: AISystem, ids: set[str]) -> tuple[dict[str, Decision], set[int]]:
    """The decisions named as superseded, by entry id, and which of them already are."""
    targets: dict[str, Decision] = {}
    for chunk in _chunks(ids):
        rows = Decision.objects.filter(system=system, entry__uuid__in=chunk).select_related("entry")
        targets.update((str(row.entry.uuid), row) for row in rows)
    taken: set[int] = set()
    for chunk in _chunks(row.pk for row in targets.values()):
        taken.update(
            Decision.objects.filter(supersedes_id__in=chunk).values_list("supersedes_id", flat=True)
        )
    return targets, taken


def _plan(system: AISystem, items: Sequence[BulkItem]) -> _Plan:
    """Sorts the records into refused, replayed (of a stored decision or of an earlier record of
    the body), conflicting and new, with the rules of the single endpoint: the idempotency key
    is looked up first, then the client decision id. Results are kept by position in `items`."""
    plan = _Plan(results=[None] * len(items))
    valid: list[tuple[int, BulkItem, dict[str, Any]]] = []
    for position, item in enumerate(items):
        if item.data is None:
            plan.results[position] = BulkResult(item.index, 400, error=item.error)
        else:
            valid.append((position, item, item.data))
    lookups_of = {
        position: decision_lookups(
            system=system,
            client_decision_id=data["client_decision_id"],
            idempotency_key=item.idempotency_key,
        )
        for position, item, data in valid
    }
    by_key = _stored_decisions(
        system,
        "idempotency_lookup",
        {key for _, key in lookups_of.values() if key is not None},
    )
    by_client_id = _stored_decisions(
        system, "client_id_lookup", {client for client, _ in lookups_of.values()}
    )
    targets, superseded = _supersede_targets(
        system, {str(data["supersedes"]) for _, _, data in valid if data.get("supersedes")}
    )
    lookups: dict[str, bytes] = {}
    body_key: dict[str, tuple[int, bytes]] = {}
    body_client_id: dict[str, tuple[int, bytes]] = {}
    claimed: set[int] = set()
    for position, item, data in valid:
        key, index = item.idempotency_key, item.index
        digest = request_digest(data)
        client_id = data["client_decision_id"]
        client_lookup, key_lookup = lookups_of[position]
        stored = by_key.get(key_lookup) if key_lookup is not None else None
        stored_field = "idempotency_key"
        if stored is None:
            stored, stored_field = by_client_id.get(client_lookup), "client_decision_id"
        if stored is not None:
            same = bytes(stored.request_digest) == digest
            plan.results[position] = (
                _answered(stored, index)
                if same
                else BulkResult(index, 409, error=_conflict(stored_field))
            )
            continue
        earlier = body_key.get(key) if key is not None else None
        earlier_field = "idempotency_key"
        if earlier is None:
            earlier, earlier_field = body_client_id.get(client_id), "client_decision_id"
        if earlier is not None:
            if earlier[1] == digest:
                plan.replays.append((position, earlier[0]))
            else:
                plan.results[position] = BulkResult(index, 409, error=_conflict(earlier_field))
            continue
        supersedes = None
        if data.get("supersedes"):
            supersedes = targets.get(str(data["supersedes"]))
            if supersedes is None:
                message = f"no decision {data['supersedes']} of this AI system to supersede"
                plan.results[position] = BulkResult(
                    index, 400, error=record_error("invalid", message, {"supersedes": [message]})
                )
                continue
            if supersedes.pk in superseded or supersedes.pk in claimed:
                message = f"decision {data['supersedes']} is already superseded"
                plan.results[position] = BulkResult(
                    index, 409, error=record_error("conflict", message, {"supersedes": [message]})
                )
                continue
            claimed.add(supersedes.pk)
        reference = data["subject_ref"]
        if reference not in lookups:
            lookups[reference] = vault.subject_lookup(system_id=system.pk, reference=reference)
        plan.new.append(
            _New(position, item, data, digest, lookups[reference], supersedes, lookups_of[position])
        )
        if key is not None:
            body_key[key] = (position, digest)
        body_client_id[client_id] = (position, digest)
    return plan


def _model_versions(system: AISystem, new: Sequence[_New]) -> dict[tuple[str, str], ModelVersion]:
    """The versions the new records name; unknown ones are registered as undeclared, each as
    its own entry committed before the records (as a single decision would register it)."""
    wanted = {(n.data["model"]["name"], n.data["model"]["version"]) for n in new}
    versions: dict[tuple[str, str], ModelVersion] = {}
    for chunk in _chunks({name for name, _ in wanted}):
        rows = ModelVersion.objects.filter(system=system, name__in=chunk).select_related("entry")
        versions.update(
            ((row.name, row.version), row) for row in rows if (row.name, row.version) in wanted
        )
    for name, version in sorted(wanted - set(versions)):
        with transaction.atomic(durable=True):
            registered, _ = model_version_register(system=system, name=name, version=version)
        versions[(name, version)] = registered
    return versions


@dataclass
class _Subjects:
    """The subjects of the new records, with their data keys, and the rows to write first."""

    by_lookup: dict[bytes, Subject]
    data_keys: dict[bytes, bytes]
    stored: dict[int, bytes]  # pk -> wrapped key as read: must be unchanged at commit
    rekeyed: list[Subject]  # erased before: a new key, so what was erased stays unreadable
    created: list[Subject]


def _subjects(system: AISystem, lookups: set[bytes]) -> _Subjects:
    subjects = _Subjects({}, {}, {}, [], [])
    for chunk in _chunks(lookups):
        for subject in Subject.objects.filter(system=system, lookup__in=chunk):
            subjects.by_lookup[bytes(subject.lookup)] = subject
    for lookup in lookups:
        subject = subjects.by_lookup.get(lookup)
        if subject is not None and subject.wrapped_key is not None:
            subjects.stored[subject.pk] = bytes(subject.wrapped_key)
            subjects.data_keys[lookup] = subject_key(subject)
            continue
        data_key = vault.data_key_new()
        if subject is None:
            subject = Subject(system=system, lookup=lookup)
            subjects.by_lookup[lookup] = subject
            subjects.created.append(subject)
        else:
            subjects.rekeyed.append(subject)
        subject.wrapped_key = vault.data_key_wrap(data_key, context=subject_key_context(subject))
        subjects.data_keys[lookup] = data_key
    return subjects


def _policy_apply(
    system: AISystem, plan: _Plan, versions: dict[tuple[str, str], ModelVersion]
) -> None:
    """The review intake of each new record, as a single decision gets it; records a policy
    rule rejects are answered 422 and dropped before anything of them is written."""
    plan.review = intake_context(system=system)
    plan.review.users_load(new.data["owner"] for new in plan.new if new.data.get("owner"))
    kept = []
    for new in plan.new:
        model_version = versions[(new.data["model"]["name"], new.data["model"]["version"])]
        try:
            new.intake = intake_evaluate(
                context=plan.review, data=new.data, model_version=model_version
            )
        except PolicyRejected as exc:
            error = record_error("policy_rejected", str(exc), {"policy": [str(exc)]})
            plan.results[new.position] = BulkResult(new.item.index, 422, error=error)
            continue
        kept.append(new)
    plan.new = kept


def _rows_build(system: AISystem, plan: _Plan) -> _Subjects:
    """Leaves, SETs and encrypted personal data of the new records: all the CPU work, done
    before the transaction so that it holds its locks only for the INSERTs."""
    versions = _model_versions(system, plan.new)
    _policy_apply(system, plan, versions)
    subjects = _subjects(system, {new.lookup for new in plan.new})
    envelopes: list[tuple[uuid.UUID, dict[str, Any]]] = []
    for new in plan.new:
        data = new.data
        model_version = versions[(data["model"]["name"], data["model"]["version"])]
        envelope, personal = decision_envelope(
            system=system,
            data=data,
            model_version=model_version,
            supersedes=new.supersedes,
            intake=new.intake,  # type: ignore[arg-type]
        )
        entry_id = uuid.uuid4()
        envelopes.append((entry_id, envelope))
        new.decision = Decision(
            system=system,
            client_id_lookup=new.decision_lookups[0],
            idempotency_lookup=new.decision_lookups[1],
            request_digest=new.digest,
            model_version=model_version,
            subject=subjects.by_lookup[new.lookup],
            supersedes=new.supersedes,
            occurred_at=data["occurred_at"],
            output=data["output"],
            confidence=data.get("confidence"),
            threshold=data.get("threshold"),
            solely_automated=data["solely_automated"],
            personal_data=decision_personal_seal(
                data_key=subjects.data_keys[new.lookup], entry_uuid=entry_id, personal=personal
            ),
        )
    # One time for the whole request, taken as late as it can be: every SET promises a seal
    # within the maximum merge delay from it, so only the leaves, their signatures and the
    # INSERTs come between it and the commit.
    received_at = timezone.now()
    sign = keys.signer()
    stream = vault.system_stream(system_id=system.pk)
    for new, (entry_id, envelope) in zip(plan.new, envelopes, strict=True):
        new.entry = entry_build(
            kind="decision",
            envelope=envelope,
            entry_id=entry_id,
            received_at=received_at,
            sign=sign,
            stream=stream,
        )
        new.decision.received_at = received_at  # type: ignore[union-attr]
    return subjects


def _subjects_lock(subjects: _Subjects) -> None:
    """Locks the stored subjects (in pk order, so two requests never wait on each other in a
    circle) and checks that none was erased or re-keyed since it was read; an erasure then
    waits for this transaction and lists its decisions too."""
    for chunk in _chunks(sorted(subjects.stored)):
        rows = (
            Subject.objects.select_for_update()
            .filter(pk__in=chunk)
            .order_by("pk")
            .values_list("pk", "wrapped_key")
        )
        for pk, wrapped_key in rows:
            if wrapped_key is None or bytes(wrapped_key) != subjects.stored[pk]:
                raise _Retry
    for subject in subjects.rekeyed:
        if not Subject.objects.filter(pk=subject.pk, wrapped_key__isnull=True).update(
            wrapped_key=subject.wrapped_key
        ):
            raise _Retry
    _rows_insert(Subject, subjects.created)


def _rows_insert(model: type[Model], rows: Sequence[Model]) -> None:
    """INSERTs the rows, giving them their primary keys.

    On PostgreSQL by COPY, with keys drawn from the table's sequence first: building and
    parsing a multi-row INSERT costs more than everything else a row needs. psycopg adapts
    every value as Django would, except JSON, which goes through the field's own preparation.
    """
    if not rows:
        return
    if connection.vendor != "postgresql":
        model._default_manager.bulk_create(rows, batch_size=CHUNK)
        return
    meta = model._meta
    fields = meta.concrete_fields
    attnames = [field.attname for field in fields]
    prepared = [
        (position, field) for position, field in enumerate(fields) if isinstance(field, JSONField)
    ]
    table = connection.ops.quote_name(meta.db_table)
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    with connection.wrap_database_errors, connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [meta.db_table, meta.pk.column, len(rows)],
        )
        for row, (pk,) in zip(rows, sorted(cursor.fetchall()), strict=True):
            row.pk = pk
        with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                values = [getattr(row, attname) for attname in attnames]
                for position, field in prepared:
                    values[position] = field.get_db_prep_save(values[position], connection)
                copy.write_row(values)
    for row in rows:
        row._state.adding = False
        row._state.db = connection.alias


def _write(plan: _Plan, subjects: _Subjects) -> None:
    with transaction.atomic(durable=True):
        # Subjects first: their row locks are taken before the log's shared lock, so that an
        # erasure holding one of them never waits behind a sealer that waits for us.
        _subjects_lock(subjects)
        seq_lock_share()
        _rows_insert(Entry, [new.entry for new in plan.new])  # type: ignore[misc]
        for new in plan.new:
            # Assigned now that the entries and new subjects have their keys.
            new.decision.entry = new.entry  # type: ignore[union-attr]
            new.decision.subject = new.decision.subject  # type: ignore[union-attr]
        _rows_insert(Decision, [new.decision for new in plan.new])  # type: ignore[misc]
        counts_decisions_add(
            items=[(new.decision, new.data.get("protected_attributes")) for new in plan.new]  # type: ignore[misc]
        )
        intake_store(
            context=plan.review,  # type: ignore[arg-type]
            rows=[(new.decision, new.intake) for new in plan.new],  # type: ignore[misc]
        )


def _attempt(system: AISystem, items: Sequence[BulkItem]) -> list[BulkResult]:
    plan = _plan(system, items)
    if plan.new:
        subjects = _rows_build(system, plan)
        _write(plan, subjects)
    for new in plan.new:
        plan.results[new.position] = _answered(new.decision, new.item.index, 201)  # type: ignore[arg-type]
    for position, earlier in plan.replays:
        first = plan.results[earlier]
        assert first is not None
        index = items[position].index
        if first.error is not None:  # a policy rejected the earlier record: this one too
            plan.results[position] = BulkResult(index, first.status, error=first.error)
            continue
        plan.results[position] = BulkResult(index, 200, id=first.id, leaf_hash=first.leaf_hash)
    return [result for result in plan.results if result is not None]


def decisions_bulk_record(*, system: AISystem, items: Sequence[BulkItem]) -> list[BulkResult]:
    """Records the valid items as decisions in one durable transaction; a result per item, in
    order: 201 recorded, 200 a replay (same idempotency key or client decision id, same
    content, stored before or earlier in the body), 409 the same key or id with other content
    or a decision superseded twice, 400 refused, 422 rejected by a rule of the system's policy
    (review/policy.py). Returns only after the commit, so every 201 and 200 is durable.
    """
    for _ in range(ATTEMPTS):
        try:
            return _attempt(system, items)
        except (IntegrityError, _Retry):
            continue
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != DEADLOCK:
                raise
    raise BulkContention(
        f"concurrent requests changed the same decisions or subjects {ATTEMPTS} times: retry"
    )
