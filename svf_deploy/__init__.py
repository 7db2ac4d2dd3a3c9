"""svf-deploy: deploy trained spike-driven video transformers."""
__version__ = "0.1.0"
