"""Thin per-model hooks that gather inputs for the pure functions and put their results back."""
