"""API-key authentication: `Authorization: Api-Key <key>` names one AI system."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from audit.models import SystemAPIKey

KEYWORD = "Api-Key"


class SystemAPIKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, SystemAPIKey] | None:
        header = request.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme != KEYWORD:
            return None
        key = key.strip()
        # get_from_key's checks in one query: every endpoint reads the key's system next.
        api_key = (
            SystemAPIKey.objects.get_usable_keys()
            .select_related("system")
            .filter(prefix=key.partition(".")[0])
            .first()
        )
        if api_key is None or not api_key.is_valid(key):
            raise AuthenticationFailed("the API key is unknown or revoked")
        if api_key.has_expired:
            raise AuthenticationFailed("the API key has expired")
        return AnonymousUser(), api_key

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD


class HasSystemAPIKey(BasePermission):
    message = "an AI system's API key is required: Authorization: Api-Key <key>"

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, SystemAPIKey)
