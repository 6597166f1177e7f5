"""Pydantic models of params.json, nodes files and requests: what input may hold."""
