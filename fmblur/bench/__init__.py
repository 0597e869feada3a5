"""Benchmarks that print figures (`python -m fmblur.bench`); speed targets live here, not in tests."""
