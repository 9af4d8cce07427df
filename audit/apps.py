"""App config of the AI-decision domain."""

from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "AI decisions"
