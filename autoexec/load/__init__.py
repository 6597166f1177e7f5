"""Inputs to a job: CLI or console inputs validated into a job directory and a runtime."""
