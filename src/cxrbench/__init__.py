"""cxrbench: a benchmark harness for frozen chest X-ray image encoders."""

__version__ = "0.1.0"
