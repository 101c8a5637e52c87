"""Install an ISIC challenge download into the registered layout and check it.

Download the official zips (https://challenge.isic-archive.com/data/) into one folder, then::

    python datasets/prepare_isic.py --year 2018 --download ~/Downloads/isic2018
    python datasets/prepare_isic.py --year 2017 --download ~/Downloads/isic2017
    python datasets/prepare_isic.py --year 2016 --download ~/Downloads/isic2016
    python datasets/prepare_isic.py --year 2017_part2 --download path/to/db_isic   # .mat variant

Each expected folder (e.g. ``ISIC2018_Task1-2_Training_Input``) is taken from ``<download>/<name>.zip``
(unpacked) or ``<download>/<name>/`` (copied, or symlinked with ``--link``) into
``$SKINFORMER_DATASETS/isic2018/`` (``isic2017/``, ``isic2016/``, ``isic2017_part2/``). Parts
missing from the download are reported; then every split is loaded through the built-in loader,
its first images validated, and the counts printed. Exit status 1 if a split has problems.
"""
import os
import sys

from .common import base_parser, check_splits, datasets_root_from, install_member, place

from skinformer.data.datasets import isic

YEARS = ("2018", "2017", "2016", "2017_part2")


def parts(year: str):
    """(folder under the root, folder names of the download, {dataset name: loader(root)}, metadata)."""
    if year == "2017_part2":
        names = [f for pair in isic._PART2_FOLDERS for f in (pair[0], pair[1].split("/")[0])]
        loaders = {f"isic2017_part2_mat_{s}": (lambda root, s=s: isic.load_isic2017_part2_mat(root, s))
                   for s in ("train", "val", "test")}
        return "isic2017_part2", names, loaders, isic.ISIC2017_PART2_METADATA
    folder, prefix, splits, _ = isic.ISIC_TASK1_YEARS[year]
    names = [n for pair in splits.values() for n in pair]
    loaders = {f"{prefix}_{s}": (lambda root, s=s: isic.load_isic_task1(root, year, s)) for s in splits}
    return folder, names, loaders, isic.ISIC_TASK1_METADATA


def task2_parts():
    names = [g[0] for _, g in isic._TASK2_SPLITS.values()]
    loaders = {f"isic2018_task2_{s}": (lambda root, s=s: isic.load_isic2018_task2(root, s)) for s in isic._TASK2_SPLITS}
    return names, loaders


def main(argv=None) -> int:
    p = base_parser(__doc__)
    p.add_argument("--year", choices=YEARS, required=True)
    p.add_argument("--download", default=None,
                   help="folder with the official zips or extracted folders (omit to only check)")
    args = p.parse_args(argv)
    root = datasets_root_from(args.root)
    folder, names, loaders, meta = parts(args.year)
    dest = os.path.join(root, folder)
    metadata = {n: meta for n in loaders}
    if args.year == "2018":
        t2_names, t2_loaders = task2_parts()
        names += t2_names
        loaders.update(t2_loaders)
        metadata.update({n: isic.ISIC2018_TASK2_METADATA for n in t2_loaders})

    if args.download:
        print(f"Installing {args.download} -> {dest}")
        missing = [n for n in names if not install_member(args.download, n, dest, args.link)]
        if args.year == "2017_part2":
            for f in ("train.txt", "val.txt", "test.txt"):
                src = os.path.join(args.download, f)
                if os.path.isfile(src):
                    place(src, os.path.join(dest, f), args.link)
                else:
                    missing.append(f)
        if missing:
            print(f"Not in the download (the splits needing them will fail the check): {missing}")
    problems = check_splits({n: (lambda f=f: f(root)) for n, f in loaders.items()}, metadata, args.check)
    print(f"\nRoot: {root} (set SKINFORMER_DATASETS={root} to use it)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
