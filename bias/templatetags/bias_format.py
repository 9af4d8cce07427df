"""Template filters of the bias pages: rates, ratios and p-values, with "—" where there is none."""

from __future__ import annotations

from typing import Any

from django import template

from bias.dashboard import p_text

register = template.Library()
NONE = "—"


@register.filter
def rate(value: float | None) -> str:
    return NONE if value is None else f"{value:.3f}"


@register.filter
def ratio(value: float | None) -> str:
    return NONE if value is None else f"{value:.2f}"


@register.filter
def signed(value: float | None) -> str:
    return NONE if value is None else f"{value:+.3f}"


@register.filter
def percent(value: float | None) -> str:
    return NONE if value is None else f"{value * 100:.1f} %"


@register.filter
def count(value: int | None) -> str:
    return NONE if value is None else f"{value:,}"


@register.filter
def pvalue(value: float | None) -> str:
    return NONE if value is None else p_text(value)


@register.filter
def interval(figure: dict[str, Any] | None) -> str:
    """A rate's 95 % Wilson interval, "0.412–0.455"."""
    if not figure or figure.get("low") is None or figure.get("high") is None:
        return NONE
    return f"{figure['low']:.3f}–{figure['high']:.3f}"


@register.filter
def item(mapping: dict[str, Any] | None, key: str) -> Any:
    return (mapping or {}).get(key)
