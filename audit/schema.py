"""OpenAPI description of the API-key scheme (loaded by AuditConfig.ready)."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class SystemAPIKeyScheme(OpenApiAuthenticationExtension):
    target_class = "audit.authentication.SystemAPIKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):  # type: ignore[no-untyped-def]
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>`: the key of one AI system (create_ai_system).",
        }
