"""Reads of the review app: attributions, a decision's review chain, oversight (the queue is
the admin's ReviewItem list, scoped by review.permissions)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.urls import reverse
from veridict_verify.formats import format_time
from veridict_verify.note import VerifierKey
from veridict_verify.receipt import receipt_verify

from audit.models import AISystem, Decision
from review.models import DecisionOwner, ReviewAction, ReviewItem
from review.permissions import scoped
from timestamping.models import Entry, LogKey
from timestamping.selectors import receipt_get

# A reviewer whose confirmations take less than this share of the median review time is
# flagged as possibly rubber-stamping (with at least RUBBER_STAMP_MIN_CONFIRMATIONS of them).
RUBBER_STAMP_FACTOR = 0.25
RUBBER_STAMP_MIN_CONFIRMATIONS = 5
ROLE_GROUPS = ("administrator", "compliance officer", "reviewer")


def decisions_unattributed(*, user: Any) -> QuerySet[Decision]:
    """Decisions with no accountable owner, among those the user may review, newest first."""
    decisions = scoped(Decision.objects.filter(owners__isnull=True), user, "system")
    return decisions.select_related("system", "entry", "model_version").order_by("-received_at")


def decision_owner(*, decision: Decision) -> DecisionOwner | None:
    return decision.owners.select_related("user").order_by("-created_at", "-pk").first()


def owner_role(owner: DecisionOwner | None) -> str | None:
    """What the subject page says of the owner: a role, never a name."""
    if owner is None:
        return None
    if owner.user is not None:
        groups = set(owner.user.groups.values_list("name", flat=True))
        for role in ROLE_GROUPS:
            if role in groups:
                return role
    return "a member of the operator's staff"


@lru_cache(maxsize=8)
def _ca_pem(path: str, mtime_ns: int) -> bytes:
    return Path(path).read_bytes()


def _verification_material() -> tuple[list[VerifierKey], bytes | None]:
    """Every log key that ever signed (old receipts keep verifying) and the built-in TSA's CA:
    what a user pins, taken from the server's own records and files."""
    verifier_keys = [
        VerifierKey.parse(text) for text in LogKey.objects.values_list("verifier_key", flat=True)
    ]
    path = Path(settings.TSA_CA_CERT_FILE)
    try:
        return verifier_keys, _ca_pem(str(path), path.stat().st_mtime_ns)
    except FileNotFoundError:
        return verifier_keys, None


def review_chain(*, decision: Decision, verify: bool = True) -> list[dict[str, Any]]:
    """A decision's oversight entries in order: attributions, review steps, contests; each
    with its receipt and whether that receipt verifies (veridict-verify's own code)."""
    actions = list(
        ReviewAction.objects.filter(decision=decision)
        .select_related("entry")
        .order_by("entry__seq")
    )
    material = _verification_material() if verify and actions else ([], None)
    chain = []
    for action in actions:
        receipt = receipt_get(entry=action.entry)
        sealed = receipt["proof"] is not None
        verified: bool | None = None
        detail = ""
        if verify:
            report = receipt_verify(receipt, keys=material[0], tsa_ca_pem=material[1])
            verdict = report.as_dict()["verdict"]
            verified = None if verdict == "pending" else verdict == "verified"
            failed = report.failed
            detail = f"{failed.name}: {failed.detail}" if failed else verdict
        chain.append(
            {
                "kind": action.kind,
                "entry": str(action.entry.uuid),
                "receipt_url": reverse("entry-receipt", kwargs={"entry_id": action.entry.uuid}),
                "created_at": action.created_at,
                "actor": action.actor_pseudonym,
                "output": action.output,
                "status": "sealed" if sealed else "pending",
                "verified": verified,
                "detail": detail,
            }
        )
    return chain


def review_chain_links(*, entry: Entry, request: Any) -> dict[str, Any]:
    """What a decision's receipt adds: the entries of its review chain, each with the URL of
    its own receipt (which verifies on its own); informational, not checked by the verifier."""
    actions = ReviewAction.objects.filter(decision__entry=entry).select_related("entry")
    links = []
    for action in actions.order_by("entry__seq"):
        path = reverse("entry-receipt", kwargs={"entry_id": action.entry.uuid})
        links.append(
            {
                "id": str(action.entry.uuid),
                "kind": action.kind,
                "received_at": format_time(action.entry.received_at),
                "receipt_url": request.build_absolute_uri(path),
            }
        )
    return {"review_chain": links}


def review_action_text(action: ReviewAction) -> str | None:
    """The rationale or contest statement, or None once the subject's data is erased."""
    from review.services.common import text_open

    return text_open(action)


def review_status(*, decision: Decision) -> dict[str, Any] | None:
    """The review part of the decision API's answers, or None for a decision never queued."""
    try:
        item = decision.review_item
    except ReviewItem.DoesNotExist:
        return None
    if item is None:
        return None
    return {
        "status": "pending" if item.status != ReviewItem.Status.CLOSED else "closed",
        "state": item.status,
        "reason": item.reason,
        "result": item.result,
        "final_output": item.final_output,
        "due_at": item.due_at,
    }


def final_output(*, decision: Decision) -> Any:
    """The outcome that holds: a review's final output; the AI's output when no review was
    asked for; None while the first review is pending."""
    review = review_status(decision=decision)
    if review is None:
        return decision.output
    return review["final_output"]


def _rate(overrides: int, reviews: int) -> float | None:
    return overrides / reviews if reviews else None


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def oversight_stats(*, system: AISystem | None = None) -> dict[str, Any]:
    """Override rates per reviewer, system and model version; time spent and turnaround;
    the rubber-stamp indicator: reviewers whose confirmations are much faster than the median.

    Over closed items, counted by whoever made the final review (the overrider, for four-eyes).
    """
    items = ReviewItem.objects.filter(status=ReviewItem.Status.CLOSED, result__isnull=False)
    if system is not None:
        items = items.filter(decision__system=system)
    rows = list(
        items.values(
            "result",
            "time_spent_seconds",
            "created_at",
            "closed_at",
            "claimed_by_id",
            "claimed_by__username",
            "decision__system__slug",
            "decision__model_version__name",
            "decision__model_version__version",
        )
    )
    overridden = ReviewItem.Result.OVERRIDDEN
    spent = [float(row["time_spent_seconds"]) for row in rows]
    median_seconds = _median(spent)
    groups: dict[str, dict[Any, list[dict[str, Any]]]] = {
        "reviewer": defaultdict(list),
        "system": defaultdict(list),
        "model": defaultdict(list),
    }
    for row in rows:
        groups["reviewer"][(row["claimed_by_id"], row["claimed_by__username"])].append(row)
        groups["system"][row["decision__system__slug"]].append(row)
        model = (
            row["decision__system__slug"],
            row["decision__model_version__name"],
            row["decision__model_version__version"],
        )
        groups["model"][model].append(row)

    def counts(group: list[dict[str, Any]]) -> dict[str, Any]:
        overrides = sum(1 for row in group if row["result"] == overridden)
        return {
            "reviews": len(group),
            "overrides": overrides,
            "override_rate": _rate(overrides, len(group)),
        }

    by_reviewer = []
    for (user_id, username), group in sorted(
        groups["reviewer"].items(), key=lambda kv: str(kv[0][1])
    ):
        confirm_times = [
            float(row["time_spent_seconds"]) for row in group if row["result"] != overridden
        ]
        confirm_median = _median(confirm_times)
        by_reviewer.append(
            {
                "reviewer": username,
                "user_id": user_id,
                **counts(group),
                "confirmations": len(confirm_times),
                "median_seconds": _median([float(row["time_spent_seconds"]) for row in group]),
                "median_confirm_seconds": confirm_median,
                "rubber_stamp": bool(
                    median_seconds
                    and confirm_median is not None
                    and len(confirm_times) >= RUBBER_STAMP_MIN_CONFIRMATIONS
                    and confirm_median < RUBBER_STAMP_FACTOR * median_seconds
                ),
            }
        )
    turnaround = [(row["closed_at"] - row["created_at"]).total_seconds() for row in rows]
    return {
        **counts(rows),
        "median_seconds": median_seconds,
        "median_turnaround_seconds": _median(turnaround),
        "rubber_stamp_factor": RUBBER_STAMP_FACTOR,
        "by_reviewer": by_reviewer,
        "by_system": [
            {"system": slug, **counts(group)} for slug, group in sorted(groups["system"].items())
        ],
        "by_model_version": [
            {"system": key[0], "model": key[1], "version": key[2], **counts(group)}
            for key, group in sorted(groups["model"].items())
        ],
    }
