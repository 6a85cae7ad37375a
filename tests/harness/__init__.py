"""Test harnesses that stand up real machines for the integration tests."""
