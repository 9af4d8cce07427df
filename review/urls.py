"""URLs of the review app."""

from django.urls import path  # noqa: F401

urlpatterns: list = []
