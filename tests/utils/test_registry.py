"""One lookup error for every registry: config key, registered names, nearest name when close."""
import pytest

from skinformer.config import get_cfg
from skinformer.utils.registry import Registry, RegistryKeyError, closest_name


def test_get_names_key_registered_and_nearest():
    reg = Registry("BACKBONE")

    @reg.register()
    class ResNet:  # noqa: F841
        pass

    @reg.register()
    class TimmBackbone:  # noqa: F841
        pass

    assert reg.get("ResNet") is ResNet
    with pytest.raises(RegistryKeyError) as e:
        reg.get("resnet", config_key="MODEL.BACKBONE.NAME")
    msg = str(e.value)
    assert "MODEL.BACKBONE.NAME = 'resnet'" in msg and "Did you mean 'ResNet'?" in msg
    assert "Registered: ResNet, TimmBackbone." in msg
    # far from every name: no misleading suggestion
    with pytest.raises(RegistryKeyError) as e:
        reg.get("Swin", config_key="MODEL.BACKBONE.NAME")
    assert "Did you mean" not in str(e.value) and "Registered: ResNet, TimmBackbone." in str(e.value)


def test_closest_name_cutoff():
    assert closest_name("MaskFormr", ["MaskFormer", "PerPixelSegmentor"]) == "MaskFormer"
    assert closest_name("Unet", ["MaskFormer", "PerPixelSegmentor"]) is None


def _set(cfg, key, value):
    node = cfg
    *parents, leaf = key.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value


# every registry a config key names, built through its build_* partner
@pytest.mark.parametrize("key", [
    "MODEL.META_ARCHITECTURE", "MODEL.BACKBONE.NAME", "MODEL.SEM_SEG_HEAD.NAME",
    "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME", "MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME",
    "INPUT.DATASET_MAPPER_NAME",
])
def test_every_build_function_reports_the_config_key(key):
    from skinformer.data.mappers.build import build_dataset_mapper
    from skinformer.layers import ShapeSpec
    from skinformer.modeling.backbone.build import build_backbone
    from skinformer.modeling.meta_arch.build import build_model
    from skinformer.modeling.pixel_decoder.build import build_pixel_decoder
    from skinformer.modeling.sem_seg_heads.build import build_sem_seg_head
    from skinformer.modeling.transformer_decoder.build import build_transformer_decoder

    builders = {
        "MODEL.META_ARCHITECTURE": build_model,
        "MODEL.BACKBONE.NAME": build_backbone,
        "MODEL.SEM_SEG_HEAD.NAME": lambda c: build_sem_seg_head(c, {"res2": ShapeSpec(channels=8, stride=4)}),
        "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME": lambda c: build_pixel_decoder(c, {"res2": ShapeSpec(8, stride=4)}),
        "MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME": lambda c: build_transformer_decoder(c, 8),
        "INPUT.DATASET_MAPPER_NAME": lambda c: build_dataset_mapper(c, is_train=True),
    }
    cfg = get_cfg()
    _set(cfg, key, "NoSuchThing")
    with pytest.raises(RegistryKeyError) as e:
        builders[key](cfg)
    msg = str(e.value)
    assert f"{key} = 'NoSuchThing' is not a registered" in msg and "Registered: " in msg


def test_evaluator_type_from_metadata():
    from skinformer.data.catalog import MetadataCatalog
    from skinformer.evaluation.build import build_evaluator

    MetadataCatalog.get("_reg_test_ds").set(evaluator_type="sem_segg")
    with pytest.raises(RegistryKeyError) as e:
        build_evaluator(get_cfg(), "_reg_test_ds", "/tmp/x")
    assert "metadata 'evaluator_type' of dataset '_reg_test_ds' = 'sem_segg'" in str(e.value)
    assert "Did you mean 'sem_seg'?" in str(e.value)


def test_every_registry_entry_takes_the_config_first():
    """One calling convention: ``obj(cfg, ...)`` for every entry of every registry."""
    import inspect

    from skinformer.data.mappers import DATASET_MAPPER_REGISTRY
    from skinformer.evaluation import EVALUATOR_REGISTRY
    from skinformer.modeling.backbone.build import BACKBONE_REGISTRY
    from skinformer.modeling.meta_arch.build import META_ARCH_REGISTRY
    from skinformer.modeling.pixel_decoder.build import PIXEL_DECODER_REGISTRY
    from skinformer.modeling.sem_seg_heads.build import SEM_SEG_HEAD_REGISTRY
    from skinformer.modeling.transformer_decoder.build import TRANSFORMER_DECODER_REGISTRY

    registries = [BACKBONE_REGISTRY, PIXEL_DECODER_REGISTRY, TRANSFORMER_DECODER_REGISTRY, SEM_SEG_HEAD_REGISTRY,
                  META_ARCH_REGISTRY, DATASET_MAPPER_REGISTRY, EVALUATOR_REGISTRY]
    assert all(len(list(reg)) > 0 for reg in registries)
    wrong = []
    for reg in registries:
        for name, obj in reg:
            # a @configurable class takes cfg through from_config
            target = obj.from_config if inspect.isclass(obj) and hasattr(obj, "from_config") else obj
            params = list(inspect.signature(target).parameters)
            if not params or params[0] != "cfg":
                wrong.append(f"{reg._name}.{name}{params}")
    assert not wrong, wrong
    # evaluators: (cfg, dataset_name, output_dir)
    for name, obj in EVALUATOR_REGISTRY:
        assert list(inspect.signature(obj).parameters)[:3] == ["cfg", "dataset_name", "output_dir"], name
