"""The helpers every stage shares, and nothing else: atomic files, size/text parsing, JSON schemas,
and the weights + manifest writer. ``core`` imports no other part of the package."""
