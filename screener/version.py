"""screener's version: one place, read by the package, its reports and setup.cfg."""
__version__ = "0.1.0"
