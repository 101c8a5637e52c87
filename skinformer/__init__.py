"""skinformer: mask-transformer segmentation for dermoscopy and endoscopy."""
__version__ = "0.1.0"
