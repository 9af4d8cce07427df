"""One JSON error shape for every API failure: {"error": {"code", "message", "fields"}}."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

# Django's own exceptions (Http404, PermissionDenied) carry no DRF code.
CODES_BY_STATUS = {403: "permission_denied", 404: "not_found"}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    fields = detail if isinstance(detail, dict) and "detail" not in detail else {}
    message = detail.get("detail") if isinstance(detail, dict) else detail
    if fields:
        message = "; ".join(
            f"{name}: {' '.join(map(str, errs)) if isinstance(errs, list) else errs}"
            for name, errs in fields.items()
        )
    code = getattr(exc, "default_code", None) or CODES_BY_STATUS.get(response.status_code, "error")
    response.data = {"error": {"code": code, "message": str(message), "fields": fields}}
    return response


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404 for URLs no route matches: JSON under /api/, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        body = {
            "error": {
                "code": "not_found",
                "message": f"no endpoint at {request.path}",
                "fields": {},
            }
        }
        return JsonResponse(body, status=404)
    return page_not_found(request, exception or Http404())
