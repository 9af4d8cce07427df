"""API-key authentication: `Authorization: Api-Key <key>` names one AI system."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.db.models import Model
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from audit.models import AISystem, SystemAPIKey

KEYWORD = "Api-Key"
M = TypeVar("M", bound=Model)


def _loaded(model: type[M], values: Sequence[Any]) -> M:
    """An instance from a row of all its concrete columns, converted as the ORM converts them."""
    fields = model._meta.concrete_fields
    converted = []
    for field, value in zip(fields, values, strict=True):
        column = field.get_col(model._meta.db_table)
        for convert in connection.ops.get_db_converters(column) + field.get_db_converters(
            connection
        ):
            value = convert(value, column, connection)
        converted.append(value)
    return model.from_db(connection.alias, [field.attname for field in fields], converted)


def _columns(model: type[Model], alias: str) -> str:
    quote = connection.ops.quote_name
    return ", ".join(f"{alias}.{quote(field.column)}" for field in model._meta.concrete_fields)


def usable_key(prefix: str) -> SystemAPIKey | None:
    """The unrevoked key with this prefix and its system, as
    `get_usable_keys().select_related("system").filter(prefix=prefix).first()` loads them, in a
    hand-written query: this runs on every API request, and the ORM takes several times longer to
    build that query than the database takes to answer it."""
    quote = connection.ops.quote_name
    keys, systems = SystemAPIKey._meta, AISystem._meta
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {_columns(SystemAPIKey, 'k')}, {_columns(AISystem, 's')} "  # noqa: S608
            f"FROM {quote(keys.db_table)} k JOIN {quote(systems.db_table)} s "
            f"ON s.{quote(systems.pk.column)} = k.{quote(keys.get_field('system').column)} "
            f"WHERE k.{quote(keys.get_field('prefix').column)} = %s "
            f"AND k.{quote(keys.get_field('revoked').column)} = %s",
            [prefix, False],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    width = len(keys.concrete_fields)
    api_key = _loaded(SystemAPIKey, row[:width])
    api_key.system = _loaded(AISystem, row[width:])
    return api_key


class SystemAPIKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, SystemAPIKey] | None:
        header = request.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme != KEYWORD:
            return None
        key = key.strip()
        # get_from_key's checks in one query: every endpoint reads the key's system next.
        api_key = usable_key(key.partition(".")[0])
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
