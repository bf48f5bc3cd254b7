"""Test doubles that only tests and benchmarks use (the demo does not run them)."""
