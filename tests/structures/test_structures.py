import torch

from skinformer.structures import (BitMasks, Boxes, ImageList, Instances, box_cxcywh_to_xyxy,
                                   box_xyxy_to_cxcywh, generalized_box_iou, masks_to_boxes,
                                   pairwise_iou, polygons_to_bitmask)


def test_image_list_pads_to_divisibility_and_keeps_sizes():
    a, b = torch.ones(3, 5, 7), torch.ones(3, 9, 4) * 2
    il = ImageList.from_tensors([a, b], size_divisibility=8, pad_value=-1)
    assert il.tensor.shape == (2, 3, 16, 8)
    assert il.image_sizes == [(5, 7), (9, 4)]
    assert (il[0] == 1).all() and (il[1] == 2).all()
    assert il.tensor[0, 0, 5:, :].eq(-1).all()


def test_masks_to_boxes_and_empty():
    m = torch.zeros(2, 6, 8, dtype=torch.bool)
    m[0, 2:4, 1:6] = True
    boxes = masks_to_boxes(m)
    assert boxes[0].tolist() == [1, 2, 6, 4]
    assert boxes[1].tolist() == [0, 0, 0, 0]
    assert BitMasks(m).get_bounding_boxes().tensor.tolist() == boxes.tolist()


def test_box_conversions_and_iou():
    xyxy = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 3.0]])
    assert torch.allclose(box_cxcywh_to_xyxy(box_xyxy_to_cxcywh(xyxy)), xyxy)
    iou = pairwise_iou(xyxy, xyxy)
    assert torch.allclose(iou, torch.tensor([[1.0, 1 / 7], [1 / 7, 1.0]]))
    giou = generalized_box_iou(xyxy, xyxy)
    assert torch.allclose(giou[0, 1], torch.tensor(1 / 7 - (9 - 7) / 9))
    degenerate = torch.tensor([[0.5, 0.5, -0.5, -0.5]])
    assert torch.isfinite(generalized_box_iou(degenerate, xyxy)).all()


def test_instances_fields_and_cat():
    inst = Instances((4, 5), gt_classes=torch.tensor([0, 1]), gt_boxes=Boxes(torch.zeros(2, 4)))
    assert len(inst) == 2 and inst.has("gt_classes")
    both = Instances.cat([inst, inst[0:1]])
    assert len(both) == 3 and len(both.gt_boxes) == 3


def test_polygon_rasterisation():
    poly = [[1, 1, 5, 1, 5, 4, 1, 4]]
    m = polygons_to_bitmask(poly, 6, 8)
    assert m.dtype == bool and m[2, 2] and not m[5, 7]
    assert polygons_to_bitmask([[1, 2]], 6, 8).sum() == 0  # degenerate polygon dropped
    bm = BitMasks.from_polygon_masks([poly, []], 6, 8)
    assert len(bm) == 2 and bm.nonempty().tolist() == [True, False]
