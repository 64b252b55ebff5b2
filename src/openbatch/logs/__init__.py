"""Durable CloudWatch-Logs-style storage for job output."""

from __future__ import annotations
