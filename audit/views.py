"""Pages for the people decided about: the decision, its reviews, and a form to contest it."""

from __future__ import annotations

import json
from uuid import UUID

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from audit import selectors
from audit.models import Decision
from audit.services.subjects import decision_personal_data
from review.models import ReviewAction, ReviewItem
from review.selectors import decision_owner, owner_role
from review.services import ReviewError, contest_record
from review.services.common import MAX_TEXT
from timestamping.selectors import receipt_get
from veridict.clients import client_ip
from veridict.ratelimit import rate_limit_hit, rate_limited


def _contest_wait(request: HttpRequest, token: str) -> int | None:
    """Seconds until another contest is accepted, or None: per decision and per address. The
    limiter fails open: a person's right to contest outweighs a missed count."""
    wait = rate_limit_hit(scope="contest-token", key=token, rate=settings.CONTEST_RATE_PER_DECISION)
    if wait is not None:
        return wait
    address = client_ip(request) or "unknown"
    return rate_limit_hit(
        scope="contest-address", key=address, rate=settings.CONTEST_RATE_PER_ADDRESS
    )


def _context(decision: Decision) -> dict[str, object]:
    personal = decision_personal_data(decision)
    item = ReviewItem.objects.filter(decision=decision).first()
    actions = list(
        ReviewAction.objects.filter(decision=decision)
        .exclude(kind=ReviewAction.Kind.ATTRIBUTION)
        .select_related("entry")
        .order_by("entry__seq")
    )
    contests = [action for action in actions if action.kind == ReviewAction.Kind.CONTEST]
    contest_pending = bool(
        contests
        and item is not None
        and item.status != ReviewItem.Status.CLOSED
        and item.reason == ReviewItem.Reason.CONTEST
    )
    return {
        "decision": decision,
        "token": decision.subject_token,
        "explanation": (personal or {}).get("fields", {}).get("explanation"),
        "erased": personal is None,
        "owner_role": owner_role(decision_owner(decision=decision)),
        "item": item,
        "actions": actions,
        "last_contest": contests[-1] if contests else None,
        "contest_pending": contest_pending,
        "max_statement": MAX_TEXT,
    }


def _page(request: HttpRequest, context: dict[str, object], status: int = 200) -> HttpResponse:
    response = render(request, "audit/decision_subject.html", context, status=status)
    # The URL is the secret: no other site may see it. "same-origin", not "no-referrer", which
    # would make the browser send "Origin: null" with the contest form and fail its CSRF check.
    response["Referrer-Policy"] = "same-origin"
    response["Cache-Control"] = "private, no-store"
    return response


@require_http_methods(["GET", "HEAD", "POST"])
def decision_subject(request: HttpRequest, token: str) -> HttpResponse:
    """The page behind a decision's subject_url: what was decided, why, who is accountable,
    its human reviews, and how to contest it (POST: the contest form)."""
    decision = selectors.decision_by_token(token=token)
    if decision is None:
        raise Http404("no such decision")
    if request.method != "POST":
        return _page(request, _context(decision))
    statement = request.POST.get("statement", "")
    error, status = None, 400
    wait = _contest_wait(request, token)
    if wait is not None:
        error, status = "Too many contests were sent just now. Please try again later.", 429
    else:
        try:
            contest_record(decision=decision, statement=statement)
        except ReviewError as exc:
            error = f"Your contest could not be recorded: {exc.message}."
        else:
            # Post/redirect/get: a reload does not send the contest again.
            url = reverse("decision-subject", kwargs={"token": token})
            return HttpResponseRedirect(f"{url}?contested=1#contest")
    context = _context(decision) | {"contest_error": error, "statement": statement}
    response = _page(request, context, status=status)
    if wait is not None:
        response["Retry-After"] = str(wait)
    return response


@require_http_methods(["GET", "HEAD"])
@rate_limited("receipt", anonymous_only=True)
def decision_subject_receipt(request: HttpRequest, token: str, entry_id: UUID) -> HttpResponse:
    """The receipt of the decision's entry or of one of its review steps, for whoever holds the
    decision's subject URL: the public receipt URL answers 404 for a private system's entries,
    and the subject page links these instead. Any other entry: 404."""
    decision = selectors.decision_by_token(token=token)
    if decision is None:
        raise Http404("no such decision")
    if decision.entry.uuid == entry_id:
        entry = decision.entry
    else:
        action = (
            ReviewAction.objects.filter(decision=decision, entry__uuid=entry_id)
            .exclude(kind=ReviewAction.Kind.ATTRIBUTION)
            .select_related("entry")
            .first()
        )
        if action is None:
            raise Http404("no such entry of this decision")
        entry = action.entry
    response = HttpResponse(
        json.dumps(receipt_get(entry=entry), indent=1), content_type="application/json"
    )
    response["Referrer-Policy"] = "no-referrer"  # the URL holds the token
    response["Cache-Control"] = "private, no-store"
    return response
