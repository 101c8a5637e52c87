from .boxes import (Boxes, box_area, box_cxcywh_to_xyxy, box_xyxy_to_cxcywh, generalized_box_iou,
                    masks_to_boxes, pairwise_iou)
from .image_list import ImageList
from .instances import Instances
from .label_space import LabelSpace
from .masks import BitMasks, polygons_to_bitmask

__all__ = [k for k in globals().keys() if not k.startswith("_")]
