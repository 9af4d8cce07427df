"""Links from one admin page to another, drawn only for staff who may open the page they lead to.

A display method of a ModelAdmin gets the row, not the request, so it cannot ask whether the viewer
may open what it links to; a reviewer shown a link to a log entry met a 403. Admins built on
`PermittedLinksAdmin` render their list and change pages with the request set aside here, and
`admin_link` draws a link only when the target's own ModelAdmin grants the viewer view permission
(plain text otherwise, and whenever no admin page is being rendered).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.db.models import Model
from django.http import HttpRequest, HttpResponse
from django.template.response import SimpleTemplateResponse
from django.urls import reverse
from django.utils.html import format_html

# A ContextVar, not an attribute of the (shared) ModelAdmin: each thread or task sees its own.
_viewing: ContextVar[HttpRequest | None] = ContextVar("admin_viewing", default=None)


@contextmanager
def _viewed_by(request: HttpRequest) -> Iterator[None]:
    token = _viewing.set(request)
    try:
        yield
    finally:
        _viewing.reset(token)


def _rendered(request: HttpRequest, view: Callable[..., HttpResponse], *args: Any) -> HttpResponse:
    with _viewed_by(request):
        response = view(request, *args)
        # The rows' display methods run when the template renders, which Django would do after
        # the view returns: render here, while the viewer is known.
        if isinstance(response, SimpleTemplateResponse):
            response.render()
    return response


class PermittedLinksAdmin(admin.ModelAdmin):
    """A ModelAdmin whose list and change pages may use `admin_link` and `viewer_may`."""

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return _rendered(request, super().changelist_view, extra_context)

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        return _rendered(request, super().changeform_view, object_id, form_url, extra_context)


def viewer_may(permission: str) -> bool:
    """Whether the staff member whose admin page is being rendered holds the permission."""
    request = _viewing.get()
    return request is not None and request.user.has_perm(permission)


def admin_link(target: Model | None, text: object = None) -> str:
    """A link to the target's admin page if the viewer may open it, else the text alone ("-" for
    no target). The text defaults to str(target)."""
    if target is None:
        return "-"
    label = str(target) if text is None else text
    request = _viewing.get()
    model = type(target)
    if request is None or not admin.site.is_registered(model):
        return format_html("{}", label)
    model_admin = admin.site.get_model_admin(model)
    if not model_admin.has_view_permission(request, target):
        return format_html("{}", label)
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[quote(target.pk)])
    return format_html('<a href="{}">{}</a>', url, label)
