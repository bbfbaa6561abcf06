"""JSONL ingestion: finding files, checking records, loading batches with checkpoints, queries.
May import ``tasks.core`` only."""
