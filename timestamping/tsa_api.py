"""Veridict's own TSA over HTTP (RFC 3161 §3.4), rate-limited, so it can time-stamp for others."""

from __future__ import annotations

from typing import Any

import structlog
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.views import APIView

from timestamping import tsa
from timestamping.anchor_backends import QUERY_MEDIA_TYPE, REPLY_MEDIA_TYPE
from veridict.ratelimit import FixedWindowThrottle

log = structlog.get_logger(__name__)

# A TimeStampReq is about a hundred bytes; anything much larger is not one.
MAX_QUERY_BYTES = 4096


class TSARateThrottle(FixedWindowThrottle):
    """Requests per client address (REMOTE_ADDR, or X-Forwarded-For with NUM_PROXIES); time-stamps
    are cheap, so a cache that is down lets them through."""

    scope = "tsa"

    def get_rate(self) -> str:
        return settings.TSA_HTTP_RATE

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class QueryRefused(APIException):
    def __init__(self, status_code: int, code: str, message: str) -> None:
        self.status_code = status_code
        self.default_code = code
        # A dict detail becomes the error body's "fields": it names what was wrong.
        super().__init__({"body": [message]}, code)


class TSAUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "tsa_unavailable"
    default_detail = "this instance's TSA is not set up (manage.py create_tsa)"


class _BinaryAPIView(APIView):
    # No authentication (so no CSRF either, which only session authentication enforces).
    authentication_classes: list[type] = []

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # Successes are DER or PEM HttpResponses; only error bodies are rendered, and always as
        # JSON, even to a client that accepts only application/timestamp-reply.
        return super().perform_content_negotiation(request, force=True)


class TimestampView(_BinaryAPIView):
    throttle_classes = [TSARateThrottle]

    # Left out of the OpenAPI schema: RFC 3161 is its own DER protocol, specified by the RFC and
    # spoken by TSA clients (openssl ts, rfc3161-client), not by OpenAPI tooling. README
    # "Anchoring" documents the endpoint; a refused request is still a JSON error.
    @extend_schema(exclude=True)
    def post(self, request: Request) -> HttpResponse:
        media_type = (request.content_type or "").split(";")[0].strip().lower()
        if media_type != QUERY_MEDIA_TYPE:
            raise QueryRefused(
                415,
                "unsupported_media_type",
                f"Content-Type must be {QUERY_MEDIA_TYPE}, not {media_type or 'none'}",
            )
        declared = request.META.get("CONTENT_LENGTH") or "0"
        if not declared.isdigit() or int(declared) > MAX_QUERY_BYTES:
            raise QueryRefused(
                413, "too_large", f"a time-stamp query has at most {MAX_QUERY_BYTES} bytes"
            )
        query = request.stream.read(MAX_QUERY_BYTES + 1) if request.stream else b""
        if len(query) > MAX_QUERY_BYTES:
            raise QueryRefused(
                413, "too_large", f"a time-stamp query has at most {MAX_QUERY_BYTES} bytes"
            )
        try:
            reply = tsa.tsa_respond(query)
        except ImproperlyConfigured as exc:
            log.error("tsa_unavailable", reason=str(exc))
            raise TSAUnavailable() from exc
        return HttpResponse(reply, content_type=REPLY_MEDIA_TYPE)


class TSACertificateView(_BinaryAPIView):
    @extend_schema(exclude=True)
    def get(self, request: Request) -> HttpResponse:
        try:
            pem = tsa.tsa_ca_certificate_pem()
        except ImproperlyConfigured as exc:
            raise TSAUnavailable() from exc
        return HttpResponse(pem, content_type="application/x-pem-file")
