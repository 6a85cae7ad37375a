"""What a host should be: the typed settings, the version lines, the rendered compose
file and the list of resources, derived once from a host's data.

This package imports no operation and no fact (tests/unit/test_layers.py checks it):
operations and drift.py import the declaration, facts import neither.
"""
