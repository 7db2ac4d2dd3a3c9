"""Graph -> Graph passes, one per module."""
