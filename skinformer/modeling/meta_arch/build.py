import logging

import torch

from skinformer.utils.env import resolve_device
from skinformer.utils.registry import Registry

__all__ = ["META_ARCH_REGISTRY", "build_model"]

META_ARCH_REGISTRY = Registry("META_ARCH")
META_ARCH_REGISTRY.__doc__ = """
Registry for meta-architectures: whole models.

Each entry is called as ``obj(cfg)`` and returns an ``nn.Module`` that takes a list of dataset
dicts (``{"image": uint8 C×H×W, "height", "width", "sem_seg" / "instances" / "label_masks" ...}``).
In training mode it returns a dict of scalar losses; in eval mode a list of dicts with
``"sem_seg"`` (``K×H×W`` scores at the original resolution) and/or ``"instances"``.
The name is read from ``cfg.MODEL.META_ARCHITECTURE``.
"""


def build_model(cfg) -> torch.nn.Module:
    """Build the whole model named by ``cfg.MODEL.META_ARCHITECTURE`` on ``cfg.MODEL.DEVICE``,
    with ``MODEL.INIT`` applied to its new (non-backbone) layers, its 4-d weights in channels-last
    layout when ``MODEL.CHANNELS_LAST``, its linear layers on the CPU kernel that
    ``MODEL.CPU_LINEAR_KERNEL`` names."""
    # Importing the package registers every built-in architecture.
    import skinformer.modeling  # noqa: F401

    from skinformer.layers import resolve_cpu_linear_kernel, set_cpu_linear_kernel
    from skinformer.modeling.weight_init import init_from_config

    model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE, config_key="MODEL.META_ARCHITECTURE")(cfg)
    init_from_config(model, cfg)  # MODEL.INIT.METHOD (default "none": modules keep their own init)
    model.to(resolve_device(cfg.MODEL.DEVICE))
    if cfg.MODEL.CHANNELS_LAST:
        # NHWC convolutions: about 0.7x the CPU time of a DeepLabV3+ Lite0 training step (1 thread)
        model.to(memory_format=torch.channels_last)
    kernel = resolve_cpu_linear_kernel(cfg.MODEL.CPU_LINEAR_KERNEL)
    if kernel != "blas" and set_cpu_linear_kernel(model, kernel):
        logging.getLogger(__name__).info(
            "Linear layers on CPU run through oneDNN (MODEL.CPU_LINEAR_KERNEL %s)", cfg.MODEL.CPU_LINEAR_KERNEL)
    return model
