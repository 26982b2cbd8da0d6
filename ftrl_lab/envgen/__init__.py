"""Automated environment construction (the paper's five-stage pipeline)."""
