"""App config of the log engine."""

from django.apps import AppConfig


class TimestampingConfig(AppConfig):
    name = "timestamping"
    verbose_name = "Verifiable log"
