"""The loader toolkit every scenario uses: one copy of each helper a data set needs.

- where the files are: ``data_roots`` (``--data-root``, then UNLEARNBENCH_DATA) and
  ``find_or_download`` (those roots, installed copies, an earlier download, a download);
- images: ``native_view`` (images kept at their fixed native size), ``eval_view`` (Resize +
  CenterCrop, torchvision's rounding), ``list_class_folders`` (ImageFolder order) and
  ``read_images`` (many files, decoded in parallel, with a digest of their bytes);
- weights: ``load_state_dict``, the one safe reader of a user's or a hub's state dict;
- hashing: ``file_sha256`` (one file) and ``fingerprint`` (a data set's parts);
- checking: ``Definition``, what a data set's release holds (counts, image size, classes), which
  its loader checks what it read against, naming the file and the value expected.

A third-party scenario imports these from ``unlearnbench.data`` as the built-ins do.
Importing this module never imports torch, numpy or Pillow; each helper imports what it needs.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

from .errors import DataNotFound

__all__ = [
    "DATA_ENV", "IDX_FILES", "IMG_EXT", "OFFLINE_ENV", "Definition", "data_roots", "download_cache", "eval_view",
    "file_sha256", "find_idx", "find_or_download", "fingerprint", "list_class_folders", "load_state_dict",
    "native_view", "offline", "read_idx", "read_idx_set", "read_images", "write_atomic",
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


# -- what a data set is --------------------------------------------------------------------------

@dataclass(frozen=True)
class Definition:
    """What a data set's release holds, as its definition fixes it: the loader checks what it
    read against this and refuses anything else, naming the file and the value expected. A
    field left None is not checked.

    - ``n_train``, ``n_val``, ``n_test``: images in each official split;
    - ``side``: images are ``side`` x ``side`` (as stored in the files);
    - ``classes``: the number of classes; labels run 0..classes-1;
    - ``train_per_class``: train images in each class (a balanced release).

    Each built-in scenario keeps its data set's definition in a module constant ``DEFINITION``
    that its loader reads at call time. The test suite writes small files in each native format;
    its tests replace that constant with ``DEFINITION.small()`` (counts not checked) for them, and
    one test per loader shows the real definition refuses such a small set."""

    name: str
    n_train: int | None = None
    n_test: int | None = None
    n_val: int | None = None
    side: int | None = None
    classes: int | None = None
    train_per_class: int | None = None

    def small(self, **changes) -> "Definition":
        """This definition without its counts (for the test suite's small files); ``changes``
        replace other fields too (``classes=None`` for a set with fewer classes)."""
        return replace(self, **{"n_train": None, "n_test": None, "n_val": None, "train_per_class": None, **changes})

    def check_count(self, split: str, found: int, where: str) -> None:
        """``found`` images in the ``split`` ("train", "val" or "test") split, read from ``where``."""
        want = getattr(self, f"n_{split}")
        if want is not None and found != want:
            raise DataNotFound(f"{where}: expected {want:,} {split} images for {self.name}, found {found:,}; "
                               f"this is not the full {self.name} release")

    def check_per_class(self, found: int, where: str) -> None:
        """``found`` train images in the class folder ``where``."""
        if self.train_per_class is not None and found != self.train_per_class:
            raise DataNotFound(f"{where}: expected {self.train_per_class:,} train images per class for {self.name}, "
                               f"found {found:,}")

    def check_side(self, h: int, w: int, where: str) -> None:
        if self.side is not None and (h, w) != (self.side, self.side):
            raise DataNotFound(f"{where}: expected {self.side}x{self.side} images for {self.name}, found {w}x{h}")

    def check_classes(self, found: int, where: str) -> None:
        """``found`` classes listed in ``where``."""
        if self.classes is not None and found != self.classes:
            raise DataNotFound(f"{where}: expected {self.classes} classes for {self.name}, found {found}")

    def check_labels(self, y, where: str, classes: int | None = None) -> None:
        """Labels ``y`` (integers) read from ``where`` run 0..classes-1 (``classes`` defaults to the
        definition's)."""
        classes = self.classes if classes is None else classes
        if classes is None or len(y) == 0:
            return
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= classes:
            raise DataNotFound(f"{where}: {self.name} labels must run 0..{classes - 1}, found "
                               f"{'largest label ' + str(hi) if hi >= classes else 'label ' + str(lo)}")


# -- IDX (the MNIST family's format: MNIST, Fashion-MNIST) --------------------------------------

# The four files of an MNIST-family release, by role (gzipped or not).
IDX_FILES = {
    "train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte",
}


def read_idx(path: Path, ndim: int | None = None):
    """Read an IDX file (the MNIST family's native format), gzipped (``.gz``) or not; returns
    (array, the file's bytes as stored uncompressed). ``ndim``: the number of dimensions the file
    must have (3 for images, 1 for labels). Anything that is not such a file raises DataNotFound
    naming the file: a ``.gz`` that is not gzip or is cut short, a header that does not fit the
    file, a body of another size than the header says."""
    import numpy as np

    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except EOFError:
        raise DataNotFound(f"{path} is a truncated gzip file (it ends before the compressed data does); "
                           "download it again") from None
    except (gzip.BadGzipFile, zlib.error) as e:
        raise DataNotFound(f"{path} is named .gz but is not a readable gzip file ({e}); download it again, "
                           "or drop the .gz from the name if it is an uncompressed IDX file") from None
    except OSError as e:
        raise DataNotFound(f"{path} cannot be read ({type(e).__name__}: {e})") from None
    if len(data) < 4:
        raise DataNotFound(f"{path} is not an IDX file (too short: {len(data)} bytes)")
    zero, dtype_code, n = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DataNotFound(f"{path} is not an unsigned-byte IDX file (magic {data[:4].hex()}, expected 00000803 "
                           "or 00000801)")
    if ndim is not None and n != ndim:
        raise DataNotFound(f"{path}: expected an IDX file of {ndim} dimension{'s' * (ndim != 1)}, its header says {n}")
    if len(data) < 4 + 4 * n:
        raise DataNotFound(f"{path} is truncated or corrupt: its header declares {n} dimensions, which need "
                           f"{4 + 4 * n} header bytes, and the file has {len(data)}")
    dims = struct.unpack(f">{n}I", data[4:4 + 4 * n])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * n)
    expected = int(np.prod(dims, dtype=np.int64)) if dims else 1
    if body.size != expected:
        raise DataNotFound(f"{path} is truncated or corrupt: header says {dims} ({expected:,} bytes), found "
                           f"{body.size:,} bytes")
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


def idx_partial(*bases: Path) -> str | None:
    """For an error message: the first base that holds some but not all four IDX files, and
    which it lacks (None when each base holds all or none)."""
    for base in bases:
        have = [stem for stem in IDX_FILES.values() if (base / stem).exists() or (base / f"{stem}.gz").exists()]
        if have and len(have) < len(IDX_FILES):
            lacks = [stem for stem in IDX_FILES.values() if stem not in have]
            return f"{base} holds {', '.join(have)} but lacks {', '.join(lacks)} (or its .gz)"
    return None


def read_idx_set(files: dict[str, Path], what: str, definition: Definition | None = None):
    """(x uint8 (N, H, W), y int64, n_train, raw bytes): train then test, checked for agreement
    (images and labels per split, image size across splits) and, with a ``definition``, against
    it: image side, label range, train and test counts. Each error names the file."""
    import numpy as np

    d = definition or Definition(what)
    arrays, raw_bytes = {}, []
    for key in ("train_x", "train_y", "test_x", "test_y"):
        arrays[key], b = read_idx(files[key], 3 if key.endswith("_x") else 1)
        raw_bytes.append(b)
    for split in ("train", "test"):
        xf, yf = files[f"{split}_x"], files[f"{split}_y"]
        xs, ys = arrays[f"{split}_x"], arrays[f"{split}_y"]
        d.check_side(*xs.shape[1:], str(xf))
        d.check_labels(ys, str(yf))
        if xs.shape[0] != ys.shape[0]:
            raise DataNotFound(f"{d.name} files disagree on the number of {split} samples: {xs.shape[0]:,} images in "
                               f"{xf}, {ys.shape[0]:,} labels in {yf}")
    if arrays["train_x"].shape[1:] != arrays["test_x"].shape[1:]:
        tr, te = arrays["train_x"].shape[1:], arrays["test_x"].shape[1:]
        raise DataNotFound(f"{d.name} train images in {files['train_x']} are {tr[1]}x{tr[0]} but test images in "
                           f"{files['test_x']} are {te[1]}x{te[0]}")
    d.check_count("train", arrays["train_x"].shape[0], str(files["train_x"]))
    d.check_count("test", arrays["test_x"].shape[0], str(files["test_x"]))
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
    wraps its weights as ``{"state_dict": {...}}`` or ``{"model": {...}}`` is unwrapped. Every value must be a
    tensor.

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
    for wrapper in ("state_dict", "model"):  # training checkpoints; Microsoft's Swin release uses "model"
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict):
        raise refuse(f"it holds a {type(obj).__name__}, not a dict of tensors")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise refuse(f"{len(bad)} of its {len(obj)} entries are not tensors ({bad[0]!r} is a "
                     f"{type(obj[bad[0]]).__name__})")
    return obj


# -- hashing ------------------------------------------------------------------------------------

def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` (str: UTF-8) to ``path`` through a temp file in the same folder and a rename, so
    a reader or an interrupted write never sees half a file, and a failed write leaves the old one."""
    import tempfile

    p = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


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
