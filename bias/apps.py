from django.apps import AppConfig


class BiasConfig(AppConfig):
    name = "bias"
