"""Recording decisions, their outcomes, and the model versions that made them."""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from veridict_verify.formats import format_time

from audit import vault
from audit.models import AISystem, Decision, ModelVersion, Outcome
from audit.services.subjects import subject_get_or_create, subject_key
from bias.services import counts_actual_set, counts_decisions_add
from review.services.intake import (
    Intake,
    PolicyRejected,
    intake_context,
    intake_evaluate,
    intake_store,
)
from timestamping import canonical
from timestamping.services import entry_append

# Fields of a decision that may identify or describe the person: stored encrypted under the
# subject's key, and in the leaf only as salted commitments. The client decision id is also
# stored as a keyed hash (Decision.client_id_lookup), to find retries and answer ?client_id=.
PERSONAL_FIELDS = (
    "client_decision_id",
    "subject_ref",
    "inputs",
    "inputs_sha256",
    "explanation",
    "owner",
    "protected_attributes",
)


class DecisionConflict(Exception):
    """The idempotency key or client decision id was used before for a different request."""

    def __init__(self, field: str, message: str | None = None) -> None:
        super().__init__(message or f"{field} was already used for a different request")
        self.field = field


class UnknownDecision(LookupError):
    """No decision of this system has that id."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if hasattr(value, "tzinfo"):  # datetimes, normalised to the leaf's one format
        return format_time(value)
    if isinstance(value, uuid.UUID):  # `supersedes`, as the serializer hands it over
        return str(value)
    return value


def request_digest(data: dict[str, Any]) -> bytes:
    """Keyed, not a bare SHA-256: the request holds personal data, which a plain digest would let
    anyone with the row confirm by guessing, even after the subject's erasure."""
    return vault.keyed_digest(purpose=b"veridict/request/v1", data=canonical.dumps(_jsonable(data)))


def model_version_register(
    *,
    system: AISystem,
    name: str,
    version: str,
    artefact_sha256: str | None = None,
    training_data_description: str = "",
    training_data_sha256: str = "",
) -> tuple[ModelVersion, bool]:
    """Registers a model version as a ledger entry; (version, created).

    Without an artefact digest it is "undeclared": what a decision naming an unknown version
    registers, so that a new system can post at once. Declaring it later appends a new entry.
    """
    existing = ModelVersion.objects.filter(system=system, name=name, version=version).first()
    if existing is not None and (artefact_sha256 is None or existing.declared):
        return existing, False
    envelope = {
        "type": "model_version",
        "system": system.slug,
        "name": name,
        "version": version,
        "artefact_sha256": artefact_sha256,
        "training_data_sha256": training_data_sha256 or None,
        "training_data_description_sha256": hashlib.sha256(
            training_data_description.encode()
        ).hexdigest(),
    }
    try:
        with transaction.atomic():  # one savepoint: losing a race undoes the entry as well
            entry, _ = entry_append(
                kind="model_version",
                envelope=envelope,
                stream=vault.system_stream(system_id=system.pk),
            )
            if existing is not None:  # an undeclared version being declared
                existing.artefact_sha256 = artefact_sha256
                existing.training_data_description = training_data_description
                existing.training_data_sha256 = training_data_sha256
                existing.entry = entry
                existing.save()
                return existing, True
            model_version = ModelVersion.objects.create(
                system=system,
                name=name,
                version=version,
                artefact_sha256=artefact_sha256,
                training_data_description=training_data_description,
                training_data_sha256=training_data_sha256,
                entry=entry,
            )
            return model_version, True
    except IntegrityError:  # registered concurrently
        return ModelVersion.objects.get(system=system, name=name, version=version), False


def decision_lookups(
    *, system: AISystem, client_decision_id: str, idempotency_key: str | None
) -> tuple[bytes, bytes | None]:
    """The keyed hashes a decision is stored and found under (its client id, its key)."""
    key_lookup = None
    if idempotency_key is not None:
        key_lookup = vault.idempotency_lookup(system_id=system.pk, key=idempotency_key)
    client_lookup = vault.client_id_lookup(
        system_id=system.pk, client_decision_id=client_decision_id
    )
    return client_lookup, key_lookup


def _existing(
    system: AISystem, lookups: tuple[bytes, bytes | None]
) -> tuple[Decision, bool] | None:
    """The decision under this idempotency key, else under this client decision id, and
    whether it was found by the key: one query."""
    client_lookup, key_lookup = lookups
    match = Q(client_id_lookup=client_lookup)
    if key_lookup is not None:
        match |= Q(idempotency_lookup=key_lookup)
    found = list(Decision.objects.filter(match, system=system).select_related("entry")[:2])
    for decision in found:
        if key_lookup is not None and bytes(decision.idempotency_lookup or b"") == key_lookup:
            return decision, True
    return (found[0], False) if found else None


def _replay(existing: tuple[Decision, bool], digest: bytes) -> Decision:
    decision, by_key = existing
    if bytes(decision.request_digest) != digest:
        raise DecisionConflict("Idempotency-Key" if by_key else "client_decision_id")
    return decision


def decision_record(
    *, system: AISystem, data: dict[str, Any], idempotency_key: str | None = None
) -> tuple[Decision, bool]:
    """Records a decision and appends its entry, in one durable transaction; (decision, created).

    A retry of the same request (same idempotency key or client decision id, same content)
    returns the first decision; different content under either raises DecisionConflict.
    """
    digest = request_digest(data)
    lookups = decision_lookups(
        system=system,
        client_decision_id=data["client_decision_id"],
        idempotency_key=idempotency_key,
    )
    try:
        with transaction.atomic(durable=True):
            return _decision_create(system, data, digest, lookups), True
    except PolicyRejected:
        # A retry of a decision recorded before the policy changed is still a retry.
        existing = _existing(system, lookups)
        if existing is None:
            raise
        return _replay(existing, digest), False
    except IntegrityError:
        # A retry, or a concurrent twin that committed first: no lookup before the insert (a
        # round trip on every request for the rare retry), the unique constraints find them.
        # Our entry and rows are rolled back with the whole transaction (no savepoint: each is
        # a round trip), and the first request's answer is the answer.
        existing = _existing(system, lookups)
        if existing is None:
            if data.get("supersedes"):  # a concurrent correction of the same decision won
                raise DecisionConflict(
                    "supersedes", "the decision was already superseded"
                ) from None
            raise
        return _replay(existing, digest), False


def decision_envelope(
    *,
    system: AISystem,
    data: dict[str, Any],
    model_version: ModelVersion,
    supersedes: Decision | None,
    intake: Intake,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A decision's leaf body and its personal part (the fields and their commitment salts).

    The leaf holds only salted commitments to the personal fields; the personal part is what
    gets sealed under the subject's key. Shared by the single and the bulk endpoint, so that
    both write the same leaves.
    """
    personal = {name: _jsonable(data.get(name)) for name in PERSONAL_FIELDS}
    salts = {name: vault.salt_new() for name, value in personal.items() if value is not None}
    envelope = {
        "type": "decision",
        "system": system.slug,
        "model": {"name": model_version.name, "version": model_version.version},
        "model_version_entry": str(model_version.entry.uuid),
        "occurred_at": format_time(data["occurred_at"]),
        "output": data["output"],
        "confidence": data.get("confidence"),
        "threshold": data.get("threshold"),
        "solely_automated": data["solely_automated"],
        "supersedes": str(supersedes.entry.uuid) if supersedes else None,
        "commitments": {
            name: vault.commitment(salt=salt, value=personal[name]) for name, salt in salts.items()
        },
        # The policy version applied, and the system's default owner if the record named none.
        **intake.envelope_fields(),
    }
    sealed_part = {
        "fields": personal,
        "salts": {name: base64.b64encode(salt).decode() for name, salt in salts.items()},
    }
    return envelope, sealed_part


def decision_personal_seal(*, data_key: bytes, entry_uuid: Any, personal: dict[str, Any]) -> bytes:
    """The personal part encrypted under the subject's key, bound to the decision's entry."""
    return vault.seal_json(data_key, personal, context=f"decision:{entry_uuid}".encode())


def _decision_create(
    system: AISystem, data: dict[str, Any], digest: bytes, lookups: tuple[bytes, bytes | None]
) -> Decision:
    # The subject's row lock first, the log's sequence lock (a model version's entry) after:
    # the order erasure takes them too, so the two never wait on each other in a cycle.
    subject = subject_get_or_create(system=system, reference=data["subject_ref"])
    model = data["model"]
    model_version = (
        ModelVersion.objects.filter(system=system, name=model["name"], version=model["version"])
        .select_related("entry")  # the envelope names the version's entry
        .first()
        or model_version_register(system=system, name=model["name"], version=model["version"])[0]
    )
    supersedes = None
    if data.get("supersedes"):
        supersedes = Decision.objects.filter(system=system, entry__uuid=data["supersedes"]).first()
        if supersedes is None:
            raise UnknownDecision(f"no decision {data['supersedes']} to supersede")
        # Superseded already: the one-to-one constraint refuses the insert (decision_record).
    # Before the entry: the leaf names the policy version that let the decision through.
    context = intake_context(system=system)
    intake = intake_evaluate(context=context, data=data, model_version=model_version)
    envelope, personal = decision_envelope(
        system=system, data=data, model_version=model_version, supersedes=supersedes, intake=intake
    )
    entry, _ = entry_append(
        kind="decision", envelope=envelope, stream=vault.system_stream(system_id=system.pk)
    )
    sealed = decision_personal_seal(
        data_key=subject_key(subject), entry_uuid=entry.uuid, personal=personal
    )
    decision = Decision.objects.create(
        system=system,
        entry=entry,
        client_id_lookup=lookups[0],
        idempotency_lookup=lookups[1],
        request_digest=digest,
        model_version=model_version,
        subject=subject,
        supersedes=supersedes,
        occurred_at=data["occurred_at"],
        output=data["output"],
        confidence=data.get("confidence"),
        threshold=data.get("threshold"),
        solely_automated=data["solely_automated"],
        personal_data=sealed,
        received_at=entry.received_at,
    )
    counts_decisions_add(items=[(decision, data.get("protected_attributes"))])
    intake_store(context=context, rows=[(decision, intake)])
    return decision


def outcome_record(*, decision: Decision, actual: dict[str, Any], observed_at: Any) -> Outcome:
    """Appends the ground truth of a decision as its own entry."""
    with transaction.atomic(durable=True):
        entry, _ = entry_append(
            kind="outcome",
            stream=vault.system_stream(system_id=decision.system_id),
            envelope={
                "type": "outcome",
                "system": decision.system.slug,
                "decision": str(decision.entry.uuid),
                "actual": actual,
                "observed_at": format_time(observed_at),
            },
        )
        # After the entry, so that the log's shared lock is taken before the decision's row
        # lock here as in a review's finalisation; before the row, which it must not count.
        counts_actual_set(decision=decision, actual=actual)
        return Outcome.objects.create(
            decision=decision, entry=entry, actual=actual, observed_at=observed_at
        )
