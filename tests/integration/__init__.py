"""Tests that run real processes against the test database."""
