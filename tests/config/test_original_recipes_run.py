"""A recipe of an original project runs end to end as configured (epoch budget, ReduceLROnPlateau on the validation
Dice, best checkpoint): the Technion attention U-Net on a tiny ISIC 2018 Task 2 tree."""
import os
import sys


from skinformer.config import get_cfg
from skinformer.engine.defaults import DefaultTrainer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "modeling"))
from test_per_pixel_multilabel import task2_root  # noqa: E402,F401  (the Task 2 fixture, one definition)


def test_technion_attention_unet_recipe_trains_and_keeps_best(task2_root):  # noqa: F811 (imported fixture)
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(ROOT, "configs", "original_recipes", "technion_unet_attention_isic2018_task2.yaml"))
    cfg.merge_from_list([  # same recipe, tiny widths and images
        "MODEL.UNET_ENCODER.CHANNELS", "[8, 16, 32, 64, 128]", "MODEL.SEM_SEG_HEAD.UNET_DECODER_CHANNELS",
        "[64, 32, 16, 8]", "INPUT.FIXED_SIZE", "(32, 32)", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_EPOCHS", "3",
        "TEST.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0", "TEST.NUM_VIS", "0",
        "DATASETS.VALIDATE_FIRST_N", "1", "OUTPUT_DIR", str(task2_root / "out")])
    trainer = DefaultTrainer(cfg)
    assert trainer.model.multi_label
    trainer.train()
    assert trainer.max_iter == 6  # 3 epochs of 4 images at batch 2
    out = os.listdir(task2_root / "out")
    assert "model_best.pth" in out and "model_final.pth" in out
