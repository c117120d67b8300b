"""DTMA agent: the read side of a toolbox."""

__version__ = "1.3.0"
