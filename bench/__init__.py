"""Benchmarks: figures measured side by side with a reference in the same run (``make bench``)."""
