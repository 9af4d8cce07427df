"""Server-rendered pages of the log."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from timestamping import selectors


def home(request: HttpRequest) -> HttpResponse:
    latest = selectors.batch_latest()
    context = {"latest": latest, "pending": selectors.entries_pending_count(after=latest)}
    return render(request, "home.html", context)
