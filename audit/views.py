"""Pages for the people decided about."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from audit import selectors
from audit.services.decisions import decision_personal_data


def decision_subject(request: HttpRequest, token: str) -> HttpResponse:
    """The page behind a decision's subject_url: what was decided, why, and how to contest."""
    decision = selectors.decision_by_token(token=token)
    if decision is None:
        raise Http404("no such decision")
    personal = decision_personal_data(decision)
    explanation = (personal or {}).get("fields", {}).get("explanation")
    context = {"decision": decision, "explanation": explanation, "erased": personal is None}
    response = render(request, "audit/decision_subject.html", context)
    response["Referrer-Policy"] = "no-referrer"  # the URL is the secret
    response["Cache-Control"] = "private, no-store"
    return response
