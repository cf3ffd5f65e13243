"""Notes on their way out: each once (dedupe.py), then written (export.py, or the Redis list)."""
