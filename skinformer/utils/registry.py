"""Registries are fvcore's; this module only re-exports it so every registry has one import path."""
from fvcore.common.registry import Registry

__all__ = ["Registry"]
