"""The work: plain functions and values that never import Prefect (flows/ wraps them)."""
