from ._flagrail import bucket
__all__ = ["bucket"]
