"""Helpers the review services share: pseudonyms, sealed free text, ledger actions."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from audit import vault
from audit.models import Decision
from audit.services.subjects import subject_key
from review.errors import RationaleRequired, SubjectErased
from review.models import ReviewAction, ReviewItem
from timestamping.services import entry_append

MAX_TEXT = 10_000
# For systems without review settings (ReviewSettings.review_deadline_hours has the same default).
DEFAULT_DEADLINE_HOURS = 72
SUBJECT_PSEUDONYM = "subject"


def actor_pseudonym(user: Any) -> str:
    """A stable pseudonym for a staff user: a keyed hash of the user id, so the leaf names no
    one and only the operator (who holds the master key) can tell who it was."""
    digest = vault.keyed_digest(purpose=b"veridict/actor/v1", data=str(user.pk).encode())
    return f"u-{digest[:12].hex()}"


def text_clean(text: Any, *, what: str = "rationale") -> str:
    cleaned = text.strip() if isinstance(text, str) else ""
    if not cleaned:
        raise RationaleRequired(f"a written {what} is required")
    if len(cleaned) > MAX_TEXT:
        raise RationaleRequired(f"the {what} is longer than {MAX_TEXT:,} characters")
    return cleaned


def _text_context(entry_uuid: Any) -> bytes:
    return f"review-text:{entry_uuid}".encode()


@dataclass
class SealedText:
    """Free text committed in a leaf: the commitment goes in the leaf, text and salt are sealed
    under the subject's key once the entry exists (the entry id binds the ciphertext)."""

    text: str
    salt: bytes
    data_key: bytes

    @classmethod
    def for_decision(cls, decision: Decision, text: str) -> SealedText:
        try:
            data_key = subject_key(decision.subject)
        except vault.VaultError as exc:
            raise SubjectErased(
                "the personal data of this decision was erased: nothing can be added to it"
            ) from exc
        return cls(text=text, salt=vault.salt_new(), data_key=data_key)

    @property
    def commitment(self) -> str:
        return vault.commitment(salt=self.salt, value=self.text)

    def sealed(self, entry_uuid: Any) -> bytes:
        value = {"text": self.text, "salt": base64.b64encode(self.salt).decode()}
        return vault.seal_json(self.data_key, value, context=_text_context(entry_uuid))


def text_opening(action: ReviewAction) -> dict[str, str] | None:
    """An action's free text and its commitment salt (base64): {"text", "salt"}; None without
    text or once the subject is erased."""
    if action.sealed_text is None:
        return None
    try:
        key = subject_key(action.decision.subject)
        value: dict[str, str] = vault.open_json(
            key, bytes(action.sealed_text), context=_text_context(action.entry.uuid)
        )
    except vault.VaultError:
        return None
    return value


def text_open(action: ReviewAction) -> str | None:
    """An action's free text, or None without text or once the subject is erased."""
    opened = text_opening(action)
    return None if opened is None else opened["text"]


def action_append(
    *,
    decision: Decision,
    kind: str,
    entry_kind: str,
    actor: Any,
    pseudonym: str,
    item: ReviewItem | None = None,
    text: SealedText | None = None,
    output: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> ReviewAction:
    """Appends one oversight entry naming the decision's entry, and its ReviewAction row; joins
    the caller's transaction."""
    envelope: dict[str, Any] = {
        "type": entry_kind,
        "system": decision.system.slug,
        "decision": str(decision.entry.uuid),
        "action": kind,
        "actor": pseudonym,
        "text_commitment": text.commitment if text else None,
        "output": output,
        **(extra or {}),
    }
    entry, _ = entry_append(
        kind=entry_kind,
        envelope=envelope,
        stream=vault.system_stream(system_id=decision.system_id),
    )
    return ReviewAction.objects.create(
        entry=entry,
        decision=decision,
        item=item,
        kind=kind,
        actor=actor,
        actor_pseudonym=pseudonym,
        output=output,
        sealed_text=text.sealed(entry.uuid) if text else None,
        created_at=entry.received_at,
    )


def due_at(*, hours: int) -> datetime:
    return timezone.now() + timedelta(hours=hours)
