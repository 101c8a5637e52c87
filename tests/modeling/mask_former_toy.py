"""Tiny mask-transformer models and inputs shared by the tests in this folder."""
import torch
import torch.nn as nn

from skinformer.config import get_cfg
from skinformer.modeling import BACKBONE_REGISTRY, Backbone
from skinformer.structures import Boxes, Instances, masks_to_boxes


class ToyBackbone(Backbone):
    """Four strided convs: res2..res5 at strides 4..32 with few channels (fast on CPU)."""

    def __init__(self, cfg=None, input_shape=None, channels=(16, 24, 32, 48)):
        super().__init__()
        layers, c_in = [], 3
        for i, c in enumerate(channels):
            stride = 4 if i == 0 else 2
            layers.append(nn.Sequential(nn.Conv2d(c_in, c, 3, stride=stride, padding=1), nn.GroupNorm(8, c), nn.ReLU()))
            c_in = c
        self.stages = nn.ModuleList(layers)
        self._out_features = ["res2", "res3", "res4", "res5"]
        self._out_feature_channels = dict(zip(self._out_features, channels))
        self._out_feature_strides = dict(zip(self._out_features, (4, 8, 16, 32)))

    @property
    def size_divisibility(self):
        return 32

    def forward(self, x):
        out = {}
        for name, stage in zip(self._out_features, self.stages):
            x = stage(x)
            out[name] = x
        return out


if "ToyBackbone" not in BACKBONE_REGISTRY:
    BACKBONE_REGISTRY.register(ToyBackbone)


def tiny_cfg(arch: str = "MaskFormer", num_classes: int = 1, ce: bool = True, instance: bool = False,
             multilabel: bool = False):
    """A few-thousand-parameter MaskFormer / SiMaskFormer config on :class:`ToyBackbone`."""
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = arch
    cfg.MODEL.BACKBONE.NAME = "ToyBackbone"
    head = cfg.MODEL.SEM_SEG_HEAD
    head.NUM_CLASSES = num_classes
    head.CONVS_DIM = 32
    head.MASK_DIM = 32
    head.NORM = "GN"
    head.TRANSFORMER_ENC_LAYERS = 1
    head.DIM_FEEDFORWARD = 64
    head.DEFORMABLE_TRANSFORMER_ENCODER_N_HEADS = 4
    head.DEFORMABLE_TRANSFORMER_ENCODER_N_POINTS = 2
    head.FPN_FUSION = "CONCAT" if arch == "SiMaskFormer" else "SUM"
    node = cfg.MODEL.SIMASKFORMER if arch == "SiMaskFormer" else cfg.MODEL.MASK_FORMER
    node.HIDDEN_DIM = 32
    node.NUM_OBJECT_QUERIES = 6
    node.NHEADS = 4
    node.DIM_FEEDFORWARD = 64
    node.DEC_LAYERS = 3
    node.TRAIN_NUM_POINTS = 196
    node.SEMANTIC_CE_LOSS = ce
    node.TEST.SEMANTIC_ON = not instance
    node.TEST.INSTANCE_ON = instance
    node.TEST.MULTILABEL_ON = multilabel
    if arch == "SiMaskFormer":
        node.DEC_N_POINTS = 2
        node.DN_NUM = 6
    cfg.TEST.DETECTIONS_PER_IMAGE = 5
    return cfg


def ellipse_mask(h, w, cy, cx, ry, rx):
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def make_input(h=64, w=64, masks=None, classes=None, orig=None, seed=0):
    """One mapper-style dict: random-ish image brighter inside the masks, ``instances`` from masks."""
    g = torch.Generator().manual_seed(seed)
    if masks is None:
        masks = ellipse_mask(h, w, h * 0.5, w * 0.45, h * 0.25, w * 0.3)[None]
        classes = [0]
    masks = torch.as_tensor(masks).bool()
    image = torch.randint(40, 90, (3, h, w), generator=g, dtype=torch.int64)
    for i, m in enumerate(masks):
        image[i % 3][m] = 200
    inst = Instances((h, w))
    inst.gt_classes = torch.as_tensor(classes, dtype=torch.int64)
    inst.gt_masks = masks
    inst.gt_boxes = Boxes(masks_to_boxes(masks))
    oh, ow = orig or (h, w)
    return {"file_name": f"toy_{seed}.png", "image": image.to(torch.uint8), "height": oh, "width": ow,
            "instances": inst}


def dice(pred: torch.Tensor, gt: torch.Tensor) -> float:
    pred, gt = pred.bool(), gt.bool()
    return float(2 * (pred & gt).sum() / (pred.sum() + gt.sum()).clamp(min=1))
