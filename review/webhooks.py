"""Per-system webhooks: each final review POSTed as JSON signed with HMAC-SHA256, retried with
backoff, recorded in WebhookDelivery so that it is delivered once even if a task runs twice."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import random
import time
from datetime import timedelta
from typing import Any

import structlog
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.urls import reverse
from django.utils import timezone
from veridict_verify.formats import format_time

from audit import vault
from audit.models import AISystem, Decision
from review.models import ReviewAction, ReviewItem, ReviewSettings, WebhookDelivery
from veridict.outbound import DeliveryFailed, DestinationRefused, outbound_post

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "Veridict-Signature"
DELIVERY_HEADER = "Veridict-Delivery"
# How long a try may hold a delivery: a runner that died mid-try is replaced after it.
LEASE_SECONDS = 120


def webhook_secret(*, system: AISystem) -> str:
    """The system's HMAC secret, derived from the master key (never stored): the operator shows
    it to the system's owner once, and a master-key rotation changes it."""
    raw = vault.keyed_digest(purpose=b"veridict/webhook/v1", data=str(system.pk).encode())
    return "whsec_" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def webhook_signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """The header value: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, keyed with
    the secret's text; receivers recompute it and refuse old timestamps (replays)."""
    signed = str(timestamp).encode() + b"." + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def webhook_signature_check(
    *, secret: str, header: str, body: bytes, tolerance: int = 300, now: float | None = None
) -> bool:
    """What a receiver does (and the tests): the signature matches and is recent."""
    try:
        parts = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance:
        return False
    expected = webhook_signature(secret=secret, timestamp=timestamp, body=body)
    return hmac.compare_digest(expected, header)


def webhook_delivery_create(
    *, item: ReviewItem, action: ReviewAction, client_decision_id: str | None
) -> WebhookDelivery | None:
    """In the final review's transaction: the delivery row, and its first try after commit.
    The client decision id (personal data, read by the caller) is taken out of the stored body
    again if the subject is erased (webhook_bodies_redact)."""
    url = (
        ReviewSettings.objects.filter(system_id=item.decision.system_id)
        .values_list("webhook_url", flat=True)
        .first()
    )
    if not url:
        return None
    decision = item.decision
    payload = {
        "type": "review.final",
        "system": decision.system.slug,
        "decision": {
            "id": str(decision.entry.uuid),
            "client_decision_id": client_decision_id,
        },
        "review": {
            "result": item.result,
            "reason": item.reason,
            "output": decision.output,
            "final_output": item.final_output,
            "closed_at": format_time(item.closed_at),
            "entry": str(action.entry.uuid),
            "receipt_path": reverse("entry-receipt", kwargs={"entry_id": action.entry.uuid}),
        },
    }
    delivery = WebhookDelivery(system_id=decision.system_id, action=action, url=url)
    payload["delivery"] = str(delivery.uuid)
    delivery.body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    delivery.next_attempt_at = timezone.now()
    delivery.save()
    transaction.on_commit(functools.partial(_enqueue, delivery.pk))
    return delivery


def webhook_bodies_redact(*, decisions: QuerySet[Decision]) -> None:
    """At erasure: the client decision id becomes null in the bodies of these decisions'
    deliveries, sent or still to send (a retry signs the body as it then is)."""
    deliveries = WebhookDelivery.objects.filter(action__decision__in=decisions)
    for delivery in deliveries.only("pk", "body"):
        payload = json.loads(bytes(delivery.body))
        payload["decision"]["client_decision_id"] = None
        delivery.body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        delivery.save(update_fields=["body"])


def _enqueue(delivery_id: int) -> None:
    """The first try, through the broker. A broker that is away costs only time: the review
    is committed, and the sweep finds the due delivery (so no error reaches the reviewer)."""
    from review.tasks import webhook_deliver_task  # the task module imports this one

    try:
        webhook_deliver_task.delay(delivery_id)
    except Exception as exc:  # noqa: BLE001 (kombu raises many kinds; the sweep recovers all)
        log.warning("webhook_not_queued", delivery_id=delivery_id, error=str(exc))


def _retry_delay(failures: int) -> float:
    base = settings.WEBHOOK_RETRY_BASE_SECONDS
    delay = min(base * 2 ** (failures - 1), settings.WEBHOOK_RETRY_MAX_SECONDS)
    return delay - random.uniform(0, delay / 2)  # noqa: S311 (jitter, not a secret)


def _lease(pk: int) -> bool:
    """Takes the delivery for one try if it is due and nobody holds it: one conditional
    UPDATE, so two runners cannot both send it."""
    now = timezone.now()
    with transaction.atomic():
        taken = WebhookDelivery.objects.filter(
            Q(lease_until__isnull=True) | Q(lease_until__lt=now),
            Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now),
            pk=pk,
            status__in=[WebhookDelivery.Status.PENDING, WebhookDelivery.Status.FAILED],
        ).update(lease_until=now + timedelta(seconds=LEASE_SECONDS))
    return taken == 1


def _post(delivery: WebhookDelivery, secret: str) -> tuple[int | None, str]:
    """One POST through veridict/outbound.py (public https addresses only, no redirects). The
    error kept on the row is generic on purpose: it is shown to administrators, and telling
    "refused" from "timed out" would let one probe ports through the server."""
    body = bytes(delivery.body)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Veridict-Webhook/1",
        DELIVERY_HEADER: str(delivery.uuid),
        SIGNATURE_HEADER: webhook_signature(secret=secret, timestamp=int(time.time()), body=body),
    }
    try:
        answer = outbound_post(
            url=delivery.url, body=body, headers=headers, timeout=settings.WEBHOOK_TIMEOUT_SECONDS
        )
    except DestinationRefused as exc:
        log.warning("webhook_refused", delivery=str(delivery.uuid), reason=str(exc))
        return None, "delivery refused: the URL or its address is not allowed"
    except DeliveryFailed as exc:
        # The cause stays in the server's log only.
        log.warning("webhook_failed", delivery=str(delivery.uuid), cause=repr(exc.__cause__))
        return None, "delivery failed"
    if 200 <= answer.status < 300:
        return answer.status, ""
    return answer.status, f"HTTP {answer.status}"


def webhook_deliver(*, delivery_id: int) -> str:
    """One try of one delivery; returns its status afterwards. A delivered, abandoned, leased
    or not yet due delivery is left alone, so running it twice sends it once."""
    delivery = WebhookDelivery.objects.filter(pk=delivery_id).select_related("system").first()
    if delivery is None:
        return "missing"
    if not _lease(delivery.pk):
        return WebhookDelivery.objects.get(pk=delivery.pk).status
    # Read again under the lease: the row read above may predate another runner's try.
    attempts = WebhookDelivery.objects.values_list("attempts", flat=True).get(pk=delivery.pk) + 1
    code, error = _post(delivery, webhook_secret(system=delivery.system))
    now = timezone.now()
    changes: dict[str, Any] = {
        "attempts": F("attempts") + 1,
        "lease_until": None,
        "last_status_code": code,
    }
    if code is not None and 200 <= code < 300:
        changes.update(status=WebhookDelivery.Status.DELIVERED, delivered_at=now, last_error="")
    elif attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
        changes.update(status=WebhookDelivery.Status.ABANDONED, last_error=error or f"HTTP {code}")
    else:
        changes.update(
            status=WebhookDelivery.Status.FAILED,
            last_error=error or f"HTTP {code}",
            next_attempt_at=now + timedelta(seconds=_retry_delay(attempts)),
        )
    WebhookDelivery.objects.filter(pk=delivery.pk).update(**changes)
    log.info(
        "webhook_tried",
        delivery=str(delivery.uuid),
        system=delivery.system.slug,
        status=changes["status"],
        code=code,
        attempts=attempts,
    )
    return str(changes["status"])


def webhooks_due(*, limit: int = 100) -> list[int]:
    """Deliveries whose try is due: failed ones past their backoff, and pending ones whose
    first task was lost with the broker (recovery never depends on a kept message)."""
    now = timezone.now()
    return list(
        WebhookDelivery.objects.filter(
            Q(lease_until__isnull=True) | Q(lease_until__lt=now),
            status__in=[WebhookDelivery.Status.PENDING, WebhookDelivery.Status.FAILED],
            next_attempt_at__lte=now,
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
