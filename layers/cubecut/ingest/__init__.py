"""Ingest: FFI headers → plan → row blocks (multipart parts) → finalized cube + index."""
