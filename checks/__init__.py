"""Read-only checks: the declaration compared with what a host runs, and the metrics of it.

drift.py and the deploy's pre-flight read these; nothing here changes a host.
"""
