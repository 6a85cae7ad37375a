"""Values shared by every host of inventory.py (host data overrides them).

Only keys from docs/configuration.md; anything else starting with chroma_ is
refused, so a typo cannot fall back to a default without a word.
"""

chroma_compose_project = "chroma"
chroma_version = "1.5.9"
chroma_bind_address = "127.0.0.1"
chroma_image_source = "pull"
