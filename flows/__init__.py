"""Prefect flows and their command lines: thin wrappers that order the work in tasks/.

The console scripts start in ``flows/launch.py``; importing this package does nothing else.
"""
