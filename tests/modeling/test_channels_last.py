"""MODEL.CHANNELS_LAST: the model's conv weights are NHWC and it computes the same losses and outputs."""
import os

import torch

from skinformer.config import get_cfg
from skinformer.modeling.meta_arch.build import build_model

_CFG = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                    "configs", "quickstart", "per_pixel_r18_synthetic.yaml")


def _model(channels_last):
    cfg = get_cfg()
    cfg.merge_from_file(_CFG)
    cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM = 16
    cfg.MODEL.CHANNELS_LAST = channels_last
    torch.manual_seed(0)
    return build_model(cfg)


def test_channels_last_same_results():
    plain, nhwc = _model(False), _model(True)
    convs = [m.weight for m in nhwc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert not all(m.weight.is_contiguous(memory_format=torch.channels_last)
                   for m in plain.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1))
    g = torch.Generator().manual_seed(1)
    image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8, generator=g)
    sem_seg = (torch.rand(64, 64, generator=g) > 0.5).long()
    from skinformer.data.common import sem_seg_to_instances

    batch = [{"image": image, "sem_seg": sem_seg, "height": 64, "width": 64,
              "instances": sem_seg_to_instances(sem_seg.numpy(), 1, 255)}]
    la, lb = plain(batch), nhwc(batch)
    assert la.keys() == lb.keys()
    for k in la:
        torch.testing.assert_close(la[k], lb[k], rtol=1e-4, atol=1e-5)
    plain.eval()
    nhwc.eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(batch)[0]["sem_seg"], nhwc(batch)[0]["sem_seg"], rtol=1e-4, atol=1e-5)
