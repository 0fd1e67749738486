"""The loader toolkit every scenario uses: one copy of each helper a data set needs.

- where the files are: ``data_roots`` (``--data-root``, then UNLEARNBENCH_DATA) and
  ``find_or_download`` (those roots, installed copies, an earlier download, a download);
- images: ``native_view`` (images kept at their fixed native size), ``eval_view`` (Resize +
  CenterCrop, torchvision's rounding), ``list_class_folders`` (ImageFolder order) and
  ``read_images`` (many files, decoded in parallel, with a digest of their bytes);
- weights: ``load_state_dict``, the one safe reader of a user's or a hub's state dict;
- hashing: ``file_sha256`` (one file) and ``fingerprint`` (a data set's parts).

A third-party scenario imports these from ``unlearnbench.data`` as the built-ins do.
Importing this module never imports torch, numpy or Pillow; each helper imports what it needs.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

from .errors import DataNotFound

__all__ = [
    "DATA_ENV", "IMG_EXT", "OFFLINE_ENV", "data_roots", "download_cache", "eval_view", "file_sha256",
    "find_or_download", "fingerprint", "list_class_folders", "load_state_dict", "native_view", "offline",
    "read_images",
]

DATA_ENV = "UNLEARNBENCH_DATA"
OFFLINE_ENV = "HF_HUB_OFFLINE"  # "1": nothing downloads (the tests, CI and tox set it)
IMG_EXT = (".jpeg", ".jpg", ".png", ".bmp", ".webp")

Hit = TypeVar("Hit")


# -- where the files are ------------------------------------------------------------------------

def data_roots(data_root: str | None) -> Iterator[tuple[Path, bool]]:
    """The folders a loader searches, in order: ``--data-root``, then UNLEARNBENCH_DATA; yields
    (root, explicit). An explicit root that lacks the files is an error, not a reason to look on."""
    for r, explicit in ((data_root, True), (os.environ.get(DATA_ENV), False)):
        if r:
            yield Path(r), explicit


def offline() -> bool:
    """True when HF_HUB_OFFLINE=1: loaders may read earlier downloads but must not download."""
    return os.environ.get(OFFLINE_ENV) == "1"


def download_cache() -> Path:
    """Where downloads go (and are found again): <user cache>/unlearnbench/data."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("unlearnbench")) / "data"


def find_or_download(data_root: str | None, find: Callable[[Path], Hit | None], how_to_get: str, *,
                     system: Iterable[Path] = (), download: Callable[[Path], Any] | None = None,
                     ) -> tuple[Hit, str]:
    """Find a data set; returns ``(hit, how)``: what ``find(folder)`` returned for the first folder
    that holds the files, and how it was found (for ``RawData.source``).

    The folders, in order: ``--data-root`` (if given it must hold the files: an error otherwise),
    UNLEARNBENCH_DATA, the ``system`` folders (an installed package's copy), then, when a
    ``download`` is given, the download cache: an earlier download there is used even offline;
    only when it holds nothing and HF_HUB_OFFLINE is not 1 is ``download(cache)`` called, and
    the cache searched again. Nothing found raises DataNotFound with ``how_to_get`` (a format
    string with a ``{looked}`` field) listing every place looked and why nothing was downloaded."""
    looked: list[str] = []

    def missing() -> DataNotFound:
        return DataNotFound(how_to_get.format(looked=", ".join(looked) or "no --data-root or UNLEARNBENCH_DATA given"))

    for root, explicit in data_roots(data_root):
        looked.append(str(root))
        hit = find(root)
        if hit is not None:
            return hit, "--data-root" if explicit else DATA_ENV
        if explicit:
            raise missing()
    for folder in system:
        looked.append(str(folder))
        hit = find(folder)
        if hit is not None:
            return hit, "installed copy"
    if download is not None:
        cache = download_cache()
        hit = find(cache)
        if hit is not None:
            return hit, "an earlier download, reused" + ("; HF_HUB_OFFLINE=1, nothing downloaded" if offline() else "")
        if offline():
            looked.append(f"{cache} (no download: HF_HUB_OFFLINE=1)")
        else:
            looked.append(f"{cache} (download)")
            try:
                download(cache)
            except Exception as e:  # offline, or torchvision missing: say so in the error
                looked.append(f"download failed: {type(e).__name__}: {e}")
            else:
                hit = find(cache)
                if hit is not None:
                    return hit, "downloaded now"
    raise missing()


# -- IDX (the MNIST family's format: MNIST, Fashion-MNIST) --------------------------------------

# The four files of an MNIST-family release, by role (gzipped or not).
IDX_FILES = {
    "train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte",
}


def read_idx(path: Path):
    """Read an IDX file (the MNIST family's native format), gzipped or not."""
    import numpy as np

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        raise DataNotFound(f"{path} is not an IDX file (too short)")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DataNotFound(f"{path} is not an unsigned-byte IDX file (magic {data[:4].hex()})")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    expected = int(np.prod(dims))
    if body.size != expected:
        raise DataNotFound(f"{path} is truncated or corrupt: header says {dims}, found {body.size} bytes")
    return body.reshape(dims), data


def find_idx(*bases: Path) -> dict[str, Path] | None:
    """The four IDX files of the MNIST family (gzipped or not) in the first base that has them all."""
    for base in bases:
        found = {}
        for key, stem in IDX_FILES.items():
            for cand in (base / stem, base / f"{stem}.gz"):
                if cand.exists():
                    found[key] = cand
                    break
        if len(found) == len(IDX_FILES):
            return found
    return None


def read_idx_set(files: dict[str, Path], what: str):
    """(x uint8 (N, 28, 28), y int64, n_train, raw bytes): train then test, checked for agreement."""
    import numpy as np

    arrays, raw_bytes = {}, []
    for key in ("train_x", "train_y", "test_x", "test_y"):
        arrays[key], b = read_idx(files[key])
        raw_bytes.append(b)
    if (arrays["train_x"].shape[0] != arrays["train_y"].shape[0]
            or arrays["test_x"].shape[0] != arrays["test_y"].shape[0]):
        raise DataNotFound(f"{what} files in {files['train_x'].parent} disagree on the number of samples")
    x = np.concatenate([arrays["train_x"], arrays["test_x"]])
    y = np.concatenate([arrays["train_y"], arrays["test_y"]]).astype(np.int64)
    return x, y, arrays["train_x"].shape[0], raw_bytes


# -- images -------------------------------------------------------------------------------------

def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise DataNotFound("reading images needs Pillow: pip install 'unlearnbench[vision]'") from None
    return Image


def native_view(side: int, images: str = "the data set's images") -> Callable[[bytes, str], Any]:
    """A decoder ``decode(raw, where) -> uint8 (3, side, side)`` for data sets whose images are all
    ``side`` x ``side``: kept as they are (grayscale becomes RGB). Any other size is an error, since
    the data set is not the one expected; ``images`` names them in that error."""
    def decode(raw: bytes, where: str):
        import numpy as np

        Image = _pillow()
        try:
            with Image.open(io.BytesIO(raw)) as im:
                arr = np.asarray(im.convert("RGB"))
        except Exception as e:  # truncated or not an image
            raise DataNotFound(f"{where} is not a readable image ({type(e).__name__}: {e})") from None
        if arr.shape[:2] != (side, side):
            raise DataNotFound(f"{where} is {arr.shape[1]}x{arr.shape[0]}, {images} are {side}x{side}")
        return arr.transpose(2, 0, 1)

    return decode


def eval_view(raw: bytes, where: str, resize: int = 256, side: int = 224, bicubic: bool = False):
    """Resize(resize) (shorter side, antialiased; bilinear, or bicubic as CLIP uses) then
    CenterCrop(side), with torchvision's rounding, as uint8 (3, side, side). The defaults are the
    standard ImageNet evaluation view, Resize(256) then CenterCrop(224)."""
    import numpy as np

    Image = _pillow()
    try:
        with Image.open(io.BytesIO(raw)) as im:
            im = im.convert("RGB")
            w, h = im.size
            if w <= h:
                size = (resize, int(resize * h / w))
            else:
                size = (int(resize * w / h), resize)
            im = im.resize(size, Image.BICUBIC if bicubic else Image.BILINEAR)
            w, h = im.size
            top, left = int(round((h - side) / 2.0)), int(round((w - side) / 2.0))
            arr = np.asarray(im.crop((left, top, left + side, top + side)))
    except Exception as e:  # truncated or not an image
        raise DataNotFound(f"{where} is not a readable image ({type(e).__name__}: {e})") from None
    return arr.transpose(2, 0, 1)


def list_class_folders(folder: Path) -> list[tuple[str, int]]:
    """(path, class index) in torchvision ImageFolder order: classes by sorted folder name, files
    sorted; only files ending in IMG_EXT (any case) count."""
    folder = Path(folder)
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    out = []
    for c, name in enumerate(classes):
        files = sorted(e.name for e in os.scandir(folder / name)
                       if e.is_file() and e.name.lower().endswith(IMG_EXT))
        out.extend((str(folder / name / f), c) for f in files)
    return out


def read_images(paths: list[str], decode: Callable[[bytes, str], Any] | None = None, side: int = 224,
                threads: int = 8):
    """Decode many image files with ``decode(raw, where) -> uint8 (3, side, side)`` in parallel (PIL
    releases the GIL while decoding); returns the stacked images (N, 3, side, side) and a digest of
    the files' bytes (sha256 over each file's sha256, in order). ``decode`` defaults to
    ``eval_view(raw, where, side, side, bicubic=True)``: Resize(side, bicubic) + CenterCrop(side),
    CLIP's eval view."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    if decode is None:
        def decode(raw: bytes, where: str):
            return eval_view(raw, where, side, side, bicubic=True)

    x = np.empty((len(paths), 3, side, side), dtype=np.uint8)
    h = hashlib.sha256()

    def one(i):
        with open(paths[i], "rb") as f:
            raw = f.read()
        x[i] = decode(raw, paths[i])
        return hashlib.sha256(raw).digest()

    with ThreadPoolExecutor(max(1, min(threads, os.cpu_count() or 1))) as ex:
        for d in ex.map(one, range(len(paths))):
            h.update(d)
    return x, h.digest()


# -- weights ------------------------------------------------------------------------------------

_HOW_TO_FIX = ("Give a .safetensors file, or a torch file that holds only a dict of tensors (as written by "
               "torch.save(model.state_dict(), path)); torch files are read weights-only "
               "(torch.load(weights_only=True)), so no code in a file can run")


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive is a zip with a constants.pkl record (torch.serialization's test)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            return any(n == "constants.pkl" or n.endswith("/constants.pkl") for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def load_state_dict(path: str | os.PathLike, what: str = "state dict", convert: str | None = None) -> dict:
    """The state dict in ``path``, read without running code from it: a ``.safetensors`` file, or
    any other file through ``torch.load(map_location="cpu", weights_only=True)``. A checkpoint that
    wraps its weights as ``{"state_dict": {...}}`` is unwrapped. Every value must be a tensor.

    Anything else raises DataNotFound with one text: ``<path> is not a loadable <what>: <what was
    wrong>. <how to fix it>``. ``what`` names what the caller wants (``"CLIP state dict"``);
    ``convert`` replaces the generic conversion command given for a TorchScript archive (which
    is refused: loading one can run code)."""
    import torch

    p = Path(path)

    def refuse(reason: str, fix: str = _HOW_TO_FIX) -> DataNotFound:
        return DataNotFound(f"{p} is not a loadable {what}: {reason}. {fix}")

    if not p.is_file():
        raise refuse("there is no such file" if not p.exists() else "it is not a file")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(str(p))
        except Exception as e:
            raise refuse(f"it is not a readable safetensors file ({type(e).__name__}: {e})") from None
    elif _is_torchscript(p):
        raise refuse("it is a TorchScript archive, which the suite does not load (loading one can run code)",
                     convert or "Convert it once, where you trust it, to a safetensors state dict: python -c "
                     f"\"import torch, safetensors.torch as s; m = torch.jit.load('{p.name}', map_location='cpu'); "
                     f"s.save_file({{k: v.contiguous() for k, v in m.state_dict().items()}}, '{p.stem}.safetensors')\"")
    else:
        try:
            obj = torch.load(str(p), map_location="cpu", weights_only=True)  # never runs code from the file
        except Exception as e:
            msg = str(e)
            if "WeightsUnpickler error:" in msg:  # a pickle that builds other objects than tensors, or runs code
                detail = msg.split("WeightsUnpickler error:", 1)[1].split("Check the documentation")[0]
                detail = " ".join(detail.split(" Please use ")[0].split())  # torch's allowlist advice does not apply
                raise refuse(f"the weights-only loader refused what it holds ({detail})") from None
            raise refuse(f"it is not a torch checkpoint the weights-only loader can read ({type(e).__name__}: "
                         f"{' '.join(msg.split())[:300]})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise refuse(f"it holds a {type(obj).__name__}, not a dict of tensors")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise refuse(f"{len(bad)} of its {len(obj)} entries are not tensors ({bad[0]!r} is a "
                     f"{type(obj[bad[0]]).__name__})")
    return obj


# -- hashing ------------------------------------------------------------------------------------

def file_sha256(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file's bytes, read in 16 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(*parts: bytes) -> str:
    """A data set's fingerprint: sha256 over the sha256 of each part (raw files, labels, names), in order."""
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()
