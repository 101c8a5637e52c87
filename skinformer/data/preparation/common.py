"""Helpers shared by the dataset preparation programs (``datasets/prepare_*.py``): unpack or link an official download
into ``$SKINFORMER_DATASETS/<folder>``, then load every split through the built-in loaders, validate
the first images and print the counts."""
import argparse
import os
import shutil
import sys
import zipfile
from typing import Callable, Dict, List, Optional, Tuple

__all__ = ["base_parser", "add_split_arguments", "datasets_root_from", "extract_zip", "place", "install_member", "check_splits"]


def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=None,
                   help="datasets root (default: $SKINFORMER_DATASETS, else ./datasets)")
    p.add_argument("--link", action="store_true",
                   help="symlink extracted folders of the download instead of copying them")
    p.add_argument("--check", type=int, default=20,
                   help="validate the first N images of every split (-1 = all, 0 = only count)")
    return p



def add_split_arguments(p: argparse.ArgumentParser, test_fraction: float) -> None:
    """``--seed``, ``--val-fraction`` (default 0.1) and ``--test-fraction`` of a seeded split."""
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--test-fraction", type=float, default=test_fraction)

def datasets_root_from(arg: Optional[str]) -> str:
    """The root to prepare; also exported as ``SKINFORMER_DATASETS`` so error messages name it."""
    from skinformer.data.catalog import DATASETS_ENV, datasets_root

    root = os.path.abspath(os.path.expanduser(arg) if arg else datasets_root())
    os.environ[DATASETS_ENV] = root
    return root


def extract_zip(zip_path: str, dest: str, desc: Optional[str] = None) -> List[str]:
    """Extract ``zip_path`` into ``dest`` with a progress bar; returns the top-level names it holds.
    Members escaping ``dest`` (``..``, absolute paths) are refused."""
    from tqdm import tqdm

    os.makedirs(dest, exist_ok=True)
    dest_real = os.path.realpath(dest)
    with zipfile.ZipFile(zip_path) as zf:
        members = [m for m in zf.infolist() if not m.filename.startswith("__MACOSX/")]
        for m in tqdm(members, desc=desc or os.path.basename(zip_path), unit="file"):
            target = os.path.realpath(os.path.join(dest, m.filename))
            if not (target == dest_real or target.startswith(dest_real + os.sep)):
                raise ValueError(f"{zip_path}: member {m.filename!r} would be written outside {dest}")
            zf.extract(m, dest)
        return sorted({m.filename.split("/", 1)[0] for m in members})


def place(src: str, dst: str, link: bool) -> None:
    """Copy (or symlink) file or folder ``src`` to ``dst``; an existing ``dst`` is kept."""
    if os.path.lexists(dst):
        print(f"  exists, kept: {dst}")
        return
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if link:
        os.symlink(os.path.abspath(src), dst)
    elif os.path.isdir(src):
        shutil.copytree(src, dst)
    else:
        shutil.copy2(src, dst)


def install_member(download: str, name: str, dest_dir: str, link: bool) -> bool:
    """Put the download's folder ``name`` into ``dest_dir/name``: from ``download/name/`` (folder),
    ``download/name.zip`` (extracted), or ``download`` itself when it is that zip or folder.
    Returns False when the download does not contain it."""
    target = os.path.join(dest_dir, name)
    if os.path.isdir(target):
        print(f"  exists, kept: {target}")
        return True
    cands = [os.path.join(download, name), os.path.join(download, name + ".zip")]
    if os.path.basename(download.rstrip("/")) in (name, name + ".zip"):
        cands.insert(0, download)
    for c in cands:
        if os.path.isdir(c):
            place(c, target, link)
            return True
        if os.path.isfile(c) and c.endswith(".zip"):
            tops = extract_zip(c, dest_dir, desc=name)
            if name not in tops:
                print(f"  warning: {c} unpacked to {tops}, expected a top folder {name}/", file=sys.stderr)
            return True
    return False


def check_splits(loaders: Dict[str, Callable[[], list]], metadata: Dict[str, dict], check: int) -> int:
    """Load every split (the loaders raise naming bad files), validate the first ``check`` images
    (-1 = all) and print a table of counts. Returns the number of problems (0 = ready)."""
    from skinformer.data.validation import validate_dataset_dicts

    problems = 0
    rows: List[Tuple[str, str, str]] = []
    for name, load in loaders.items():
        try:
            dicts = load()
        except (OSError, ValueError) as e:  # DataFileError / DatasetNotFoundError name the file
            rows.append((name, "-", f"ERROR: {e}"))
            problems += 1
            continue
        status = "ok"
        n = len(dicts) if check < 0 else min(check, len(dicts))
        if n:
            report = validate_dataset_dicts(dicts[:n], metadata[name], name=name, progress=True)
            if not report.ok:
                status = report.format()
                problems += 1
            else:
                status = f"ok (first {n} validated)" if n < len(dicts) else "ok (all validated)"
        if "annotations" in (dicts[0] if dicts else {}):
            status += f"; {sum(len(d['annotations']) for d in dicts)} instances"
        rows.append((name, str(len(dicts)), status))
    width = max(len(r[0]) for r in rows) if rows else 10
    print(f"\n{'dataset'.ljust(width)}  images  status")
    for name, count, status in rows:
        print(f"{name.ljust(width)}  {count.rjust(6)}  {status}")
    return problems

