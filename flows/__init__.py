"""Prefect flows and their command lines: thin wrappers that order the work in tasks/."""
