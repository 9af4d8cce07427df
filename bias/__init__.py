"""Bias audit: de-identified outcome counts, fairness metrics, dashboard, published audits."""
