"""Packaged pyinfra deploys (``@deploy`` functions) that deploy files call."""
