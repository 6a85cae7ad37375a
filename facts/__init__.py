"""Custom pyinfra facts: what is really on a host, read without changing it.

Each fact runs one tolerant shell command (absent is a value, not an error),
so a host without Docker, with the daemon down or with the stack stopped still
answers, and a no-op run over SSH costs one round trip per fact.
"""
