"""App config of the AI-decision domain."""

from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "AI decisions"

    def ready(self) -> None:
        from audit import schema  # noqa: F401 - registers the API-key scheme with drf-spectacular
