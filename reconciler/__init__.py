"""reconciler: keeps a SQL database equal to what Discord says about each guild."""

__all__ = ["__version__"]

__version__ = "0.1.0"
