"""alsmri: imaging biomarkers and clinical statistics for ALS studies, as a BIDS App."""

__version__ = "0.1.0"
__all__ = ["__version__"]
