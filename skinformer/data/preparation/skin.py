"""Build the ``skin_{acne,hemo,mela}_*`` datasets from raw skin-analysis captures and check them.

The captures (not public) come as ``<raw-root>/<type>/<id>_org_<type>.jpg`` plus the marked twin
``<id>_<digits>_<type>.jpg`` (rename ``*_melanin.jpg`` to ``*_mela.jpg`` first). For each type found
this runs the mask generation of ``tools/generate_skin_masks.py`` (default thresholds acne 20, hemo 10,
mela 22) and the seeded split of ``tools/create_skin_dataset.py``, then loads and validates every split::

    python datasets/prepare_skin.py --raw-root data_raw --seed 0 --val-fraction 0.1 --test-fraction 0.1

Result: ``$SKINFORMER_DATASETS/skin/<type>/{train,val,test}/{images,masks}``.
"""
import os
import sys

from .common import add_split_arguments, base_parser, check_splits, datasets_root_from

from skinformer.data import skin_dataset, skin_masks
from skinformer.data.datasets import skin


def main(argv=None) -> int:
    p = base_parser(__doc__)
    p.add_argument("--raw-root", default=None, help="folder with one sub-folder of raw captures per type")
    p.add_argument("--types", nargs="+", choices=skin.SKIN_TYPES, default=None)
    p.add_argument("--reduce", choices=("max", "luminance"), default="max")
    add_split_arguments(p, test_fraction=0.1)
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    root = datasets_root_from(args.root)
    types = args.types or [t for t in skin.SKIN_TYPES
                           if (args.raw_root and os.path.isdir(os.path.join(args.raw_root, t)))
                           or os.path.isdir(os.path.join(root, "skin", t))]
    if args.raw_root:
        for t in types:
            raw = os.path.join(args.raw_root, t)
            report = skin_masks.generate_masks(raw, t, reduce=args.reduce)
            print(skin_masks.format_summary(report))
            skin_dataset.create_skin_dataset(raw, t, root, args.val_fraction, args.test_fraction, args.seed,
                                             link=args.link, overwrite=args.overwrite)
    if not types:
        print("No skin types found; pass --raw-root", file=sys.stderr)
        return 1
    loaders = {f"skin_{t}_{s}": (lambda t=t, s=s: skin.load_skin(root, t, s))
               for t in types for s in ("train", "val", "test")}
    problems = check_splits(loaders, {n: skin.skin_metadata(n.split("_")[1]) for n in loaders}, args.check)
    print(f"\nRoot: {root} (set SKINFORMER_DATASETS={root} to use it)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
