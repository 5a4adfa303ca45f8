"""The version of sseproto (one place, read by the build and the code)."""

__version__ = "0.1.0"
