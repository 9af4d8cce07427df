"""Pages for the people decided about: the decision, its reviews, and a form to contest it."""

from __future__ import annotations

import time

import structlog
from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from audit import selectors
from audit.models import Decision
from audit.services.decisions import decision_personal_data
from review.models import ReviewAction, ReviewItem
from review.selectors import decision_owner, owner_role
from review.services import ReviewError, contest_record
from review.services.common import MAX_TEXT

log = structlog.get_logger(__name__)
PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _rate(text: str) -> tuple[int, int]:
    count, period = text.split("/")
    return int(count), PERIODS[period.strip()[0]]


def _over_rate(scope: str, ident: str, rate: str) -> bool:
    """A fixed-window count in the cache; True past the rate. A cache that fails lets the
    contest through: a person's right to contest outweighs a missed count."""
    limit, period = _rate(rate)
    key = f"veridict:contest:{scope}:{ident}:{int(time.time() // period)}"
    try:
        if cache.add(key, 1, timeout=period):
            return limit < 1
        return cache.incr(key) > limit
    except (DatabaseError, ValueError, ConnectionError) as exc:
        log.warning("contest_rate_uncounted", scope=scope, error=str(exc))
        return False


def _client_address(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR", "") or "unknown"


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
    response["Referrer-Policy"] = "no-referrer"  # the URL is the secret
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
    if _over_rate("token", token, settings.CONTEST_RATE_PER_DECISION) or _over_rate(
        "address", _client_address(request), settings.CONTEST_RATE_PER_ADDRESS
    ):
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
    if status == 429:
        response["Retry-After"] = "3600"
    return response
