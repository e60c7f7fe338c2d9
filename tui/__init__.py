"""Report Keeper: keeps scheduled Alma Analytics reports safe."""

__version__ = "0.1.0"
