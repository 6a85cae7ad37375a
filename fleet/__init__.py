"""Rollout planning across many hosts: batches, canaries, gates and the summary.

rollout.py (the entry point) runs pyinfra; what it decides is planned here,
without a host in sight.
"""
