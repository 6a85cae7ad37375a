"""The plumbing of a run: what every entry point needs around the operations.

The project lock, the per-run fact cache, the pre-flight checks, refusals and
the lines a user reads, the summary, the token reader and the upload of the
host tools. Nothing here declares a change on a host; operations/ does that.
"""
