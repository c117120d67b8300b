"""DTMA agent: the read side of a toolbox."""

__version__ = "1.2.0"
