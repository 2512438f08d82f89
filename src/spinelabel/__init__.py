"""spinelabel: find and name the vertebrae in sagittal spine MR."""

__version__ = "0.1.0"
