"""Prometheus metrics and structured server logs."""
