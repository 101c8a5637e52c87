import os

import numpy as np
import pytest
from PIL import Image

from skinformer.data.catalog import DatasetCatalog, MetadataCatalog
from skinformer.data.datasets import synthetic as S

SMALL = dict(image_size=64, num_train=3, num_val=2, seed=11)


def _files(folder):
    out = {}
    for dirpath, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, folder)] = open(p, "rb").read()
    return out


def test_same_seed_identical_bytes(tmp_path):
    a = S.generate_synthetic_lesion(**SMALL, root=str(tmp_path / "a"), progress=False)
    b = S.generate_synthetic_lesion(**SMALL, root=str(tmp_path / "b"), progress=False)
    assert os.path.basename(a) == os.path.basename(b)
    fa, fb = _files(a), _files(b)
    assert len(fa) == 2 * 5 + 1 and fa == fb


def test_different_seed_different_images():
    i1, _ = S.make_lesion_sample(np.random.default_rng(1), 64)
    i2, _ = S.make_lesion_sample(np.random.default_rng(2), 64)
    assert not (i1 == i2).all()


def test_masks_exact_and_lesions_visible(tmp_path):
    folder = S.generate_synthetic_lesion(**SMALL, root=str(tmp_path), progress=False)
    dicts = S.load_synthetic_lesion("train", **SMALL, root=str(tmp_path))
    assert len(dicts) == 3
    for i, d in enumerate(dicts):
        assert d["file_name"].startswith(folder)
        mask = np.asarray(Image.open(d["sem_seg_file_name"]))
        img = np.asarray(Image.open(d["file_name"]))
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255} and img.shape == (64, 64, 3)
        # the file holds exactly the generator's mask
        _, fg = S.make_lesion_sample(np.random.default_rng([SMALL["seed"], 0, i]), 64)
        assert (mask == fg.astype(np.uint8) * 255).all()
        assert 0.01 < fg.mean() < 0.6
        # lesions are darker than the skin around them
        assert img[fg].mean() < img[~fg].mean() - 15


def test_cache_reused_and_no_temp_dirs_left(tmp_path):
    a = S.generate_synthetic_lesion(**SMALL, root=str(tmp_path), progress=False)
    mtime = os.path.getmtime(os.path.join(a, "params.json"))
    assert S.generate_synthetic_lesion(**SMALL, root=str(tmp_path), progress=False) == a
    assert os.path.getmtime(os.path.join(a, "params.json")) == mtime
    assert [n for n in os.listdir(os.path.dirname(a)) if n.startswith(".tmp")] == []
    # another parameter set goes to another folder
    assert S.generate_synthetic_lesion(**dict(SMALL, seed=12), root=str(tmp_path), progress=False) != a


def test_cache_root_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SKINFORMER_CACHE", str(tmp_path))
    assert S.synthetic_cache_root() == str(tmp_path)
    path = S.generate_synthetic_lesion(**SMALL, progress=False)
    assert path.startswith(os.path.join(str(tmp_path), "synthetic_lesion"))


def test_register_custom_prefix(tmp_path):
    names = S.register_synthetic_lesion("synth_unit", **SMALL, root=str(tmp_path))
    try:
        assert names == ["synth_unit_train", "synth_unit_val"]
        assert len(DatasetCatalog.get("synth_unit_val")) == 2
        meta = MetadataCatalog.get("synth_unit_train")
        assert meta.classes == ["lesion"] and meta.ignore_label == 255 and meta.has_background_class is False
        assert meta.evaluator_type == "isic_task1" and meta.mapper == "SemanticMapper"
        assert meta.mask_encoding == "binary" and len(meta.palette) == 1
    finally:
        for n in names:
            DatasetCatalog.remove(n)
            MetadataCatalog.remove(n)


def test_default_builtin_metadata_declared_lazily():
    # resolving metadata registers the family but generates nothing
    meta = MetadataCatalog.get("synthetic_lesion_train")
    assert meta.classes == ["lesion"] and meta.evaluator_type == "isic_task1"
    assert "synthetic_lesion_val" in DatasetCatalog


@pytest.mark.slow
def test_generator_is_learnable(tmp_path):
    """A small CNN reaches Dice > 0.8 on the validation images within a few hundred CPU steps."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convs: more threads only add contention
    size = 64  # the claim holds at 128-256 px too (checked by hand); 64 px keeps CI cheap
    train = [S.make_lesion_sample(np.random.default_rng([0, 0, i]), size) for i in range(48)]
    val = [S.make_lesion_sample(np.random.default_rng([0, 1, i]), size) for i in range(12)]

    def to_tensors(samples):
        x = torch.from_numpy(np.stack([s[0] for s in samples])).permute(0, 3, 1, 2).float() / 127.5 - 1
        return x, torch.from_numpy(np.stack([s[1] for s in samples])).float()

    def block(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(),
                             nn.Conv2d(o, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU())

    class Net(nn.Module):
        def __init__(self, c=8):
            super().__init__()
            self.e1, self.e2, self.e3 = block(3, c), block(c, 2 * c), block(2 * c, 4 * c)
            self.d2, self.d1, self.out = block(6 * c, 2 * c), block(3 * c, c), nn.Conv2d(c, 1, 1)

        def forward(self, x):
            e1 = self.e1(x)
            e2 = self.e2(F.max_pool2d(e1, 2))
            e3 = self.e3(F.max_pool2d(e2, 2))
            d2 = self.d2(torch.cat([F.interpolate(e3, scale_factor=2.0), e2], 1))
            return self.out(self.d1(torch.cat([F.interpolate(d2, scale_factor=2.0), e1], 1)))[:, 0]

    xt, yt = to_tensors(train)
    xv, yv = to_tensors(val)
    net = Net()
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        idx = torch.randint(0, len(xt), (8,), generator=g)
        logit = net(xt[idx])
        p = logit.sigmoid()
        dice_loss = 1 - (2 * (p * yt[idx]).sum() + 1) / (p.sum() + yt[idx].sum() + 1)
        loss = F.binary_cross_entropy_with_logits(logit, yt[idx]) + dice_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        pred = net(xv) > 0
    torch.set_num_threads(threads)
    gt = yv > 0.5
    dice = (2 * (pred & gt).flatten(1).sum(1) / (pred.flatten(1).sum(1) + gt.flatten(1).sum(1))).mean()
    print(f"synthetic_lesion learnability: val Dice {dice:.3f}")
    assert dice > 0.8, f"Dice {dice:.3f}"
