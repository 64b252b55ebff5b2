"""Domain model: AWS Batch nouns, states and rules. Imports nothing from store, api or executors."""

from __future__ import annotations
