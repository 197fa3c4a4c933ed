"""Untrusted uploads -> files on disk, checked by content (issue #7).

An upload is copied (size-limited) into a private temporary folder, its kind is sniffed from magic bytes (never
from the file name alone), and a ZIP of a DICOM series is extracted defensively: no absolute or escaping paths, no
symlinks, no encrypted members, a bounded member count and a bounded total uncompressed size (checked against the
headers *and* while inflating, since headers can lie). Everything lives under one ``TemporaryDirectory`` that is
removed when :func:`staged_upload` exits, whatever happens.

Every user-fixable problem raises :class:`UploadError` with an HTTP status (400, 413 or 415).
"""

from __future__ import annotations

import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from covidct.errors import CovidCTError

KINDS = ("png", "jpeg", "tiff", "dicom", "zip")
SUFFIX = {"png": ".png", "jpeg": ".jpg", "tiff": ".tif", "dicom": ".dcm", "zip": ".zip"}
_CHUNK = 1 << 20
MULTIPART_SLACK = 64 * 1024  # boundary + part headers on top of the file itself


class UploadError(CovidCTError):
    """An upload the client must fix; ``status_code`` is the HTTP status to answer with."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True, kw_only=True)
class UploadLimits:
    """Bounds on what one request may make the server store, inflate and decode."""

    max_upload_bytes: int = 50 * 1024 * 1024
    max_zip_members: int = 2000
    max_zip_total_bytes: int = 1024 * 1024 * 1024
    max_pixels: int = 64 * 1024 * 1024  # per image / slice (decompression bombs)

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_zip_members", "max_zip_total_bytes", "max_pixels"):
            if getattr(self, name) < 1:
                raise UploadError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class StagedUpload:
    """A checked upload on disk: ``path`` is the file, or for a ZIP the folder holding its DICOM files."""

    kind: str
    path: Path
    filename: str
    size: int
    skipped: list[str] = field(default_factory=list)  # ZIP members that are not DICOM (ignored)
    names: dict[str, str] = field(default_factory=dict)  # file name on disk -> name the client knows

    def display(self, text: str) -> str:
        """``text`` with temporary paths replaced by the client's names (never leak server paths)."""
        for disk, shown in sorted(self.names.items(), key=lambda kv: -len(kv[0])):
            text = text.replace(disk, shown)
        return text

    @property
    def is_series(self) -> bool:
        return self.kind == "zip"


def sniff_kind(head: bytes) -> str | None:
    """``"png" | "jpeg" | "tiff" | "dicom" | "zip"`` from the first bytes (>= 132 for DICOM), else None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    return None


def _looks_like_dicom(path: Path) -> bool:
    """DICOM without the 128-byte preamble (old ACR-NEMA style): pydicom must find image attributes."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - any parse failure means "not DICOM"
        return False
    return "Rows" in ds and "Columns" in ds


def copy_limited(src: BinaryIO, dest: Path, max_bytes: int) -> int:
    """Copy a stream to ``dest``, refusing (413) as soon as it exceeds ``max_bytes``."""
    size = 0
    with open(dest, "wb") as out:
        while block := src.read(_CHUNK):
            size += len(block)
            if size > max_bytes:
                raise UploadError(_too_large(max_bytes), 413)
            out.write(block)
    return size


def _too_large(max_bytes: int) -> str:
    return f"upload too large: the limit is {max_bytes / 2**20:g} MiB"


@contextmanager
def staged_upload(
    src: BinaryIO, filename: str | None, limits: UploadLimits, *, tmp_root: str | Path | None = None
) -> Iterator[StagedUpload]:
    """Copy, sniff and (for a ZIP) extract an upload in a temporary folder removed on exit."""
    name = PurePosixPath((filename or "upload").replace("\\", "/")).name or "upload"
    tmp = Path(tempfile.mkdtemp(prefix="covidct-upload-", dir=tmp_root))
    try:
        raw = tmp / "upload.bin"
        size = copy_limited(src, raw, limits.max_upload_bytes)
        if size == 0:
            raise UploadError(f"{name}: empty upload (0 bytes)")
        with open(raw, "rb") as handle:
            head = handle.read(132)
        kind = sniff_kind(head)
        if kind is None and _looks_like_dicom(raw):
            kind = "dicom"
        if kind is None:
            raise UploadError(
                f"{name}: not a supported file: expected a PNG, JPEG, TIFF or DICOM image, or a ZIP of a DICOM "
                "series (checked by content, not by name)", 415,
            )
        if kind == "zip":
            folder = tmp / "series"
            folder.mkdir()
            members = extract_dicom_zip(raw, folder, limits, name=name)
            raw.unlink()
            names = {str(folder / disk): f"{name}:{member}" for disk, member in members.kept.items()}
            names[str(folder)] = name
            yield StagedUpload("zip", folder, name, size, members.skipped, names)
        else:
            path = raw.rename(tmp / f"upload{SUFFIX[kind]}")
            check_pixels(path, kind, limits.max_pixels, name=name)
            yield StagedUpload(kind, path, name, size, names={str(path): name})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_pixels(path: Path, kind: str, max_pixels: int, *, name: str) -> None:
    """Refuse (413) images whose header announces more than ``max_pixels`` per slice, before decoding."""
    pixels = 0
    try:
        if kind in ("png", "jpeg"):
            from PIL import Image

            with Image.open(path) as image:
                pixels = image.width * image.height
        elif kind == "tiff":
            import tifffile

            with tifffile.TiffFile(path) as tif:
                sizes = [int(p.shape[0]) * int(p.shape[1]) for p in tif.pages if len(p.shape) >= 2]
                pixels = max(sizes, default=0)
        elif kind == "dicom":
            import pydicom

            ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
            pixels = int(ds.get("Rows", 0) or 0) * int(ds.get("Columns", 0) or 0)
    except Exception:  # noqa: BLE001 - unreadable headers are reported by the reader with its own message
        return
    if pixels > max_pixels:
        raise UploadError(f"{name}: image too large ({pixels} pixels; the limit is {max_pixels})", 413)


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a member is refused (path escape, link, encryption), or None."""
    raw = info.filename
    parts = raw.replace("\\", "/").split("/")
    if "\x00" in raw:
        return "a NUL byte in its name"
    if raw.startswith(("/", "\\")) or (len(raw) > 1 and raw[1] == ":"):
        return "an absolute path"
    if ".." in parts:
        return "a path that escapes the archive ('..')"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link"
    if info.flag_bits & 0x1:
        return "encryption (not supported)"
    return None


@dataclass(frozen=True)
class ZipMembers:
    kept: dict[str, str]  # file name in the destination folder -> member name in the archive
    skipped: list[str]  # members that are not DICOM files


def extract_dicom_zip(archive: Path, dest: Path, limits: UploadLimits, *, name: str = "upload.zip") -> ZipMembers:
    """Extract the DICOM members of ``archive`` flat into ``dest`` (as ``00000.dcm``...).

    Names inside the archive are never used as paths on disk, and any dangerous member refuses the whole upload.
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            files = [i for i in infos if not i.is_dir()]
            if not files:
                raise UploadError(f"{name}: empty ZIP archive")
            if len(infos) > limits.max_zip_members:
                raise UploadError(
                    f"{name}: ZIP has {len(infos)} members; the limit is {limits.max_zip_members}", 413
                )
            for info in infos:
                problem = _member_problem(info)
                if problem:
                    raise UploadError(f"{name}: refused: ZIP member {info.filename!r} has {problem}")
            declared = sum(i.file_size for i in files)
            if declared > limits.max_zip_total_bytes:
                raise UploadError(_bomb(name, limits), 413)
            return _extract_members(zf, files, dest, limits, name)
    except zipfile.BadZipFile as exc:
        raise UploadError(f"{name}: corrupt ZIP archive ({exc})") from None
    except (NotImplementedError, RuntimeError) as exc:  # unsupported compression, encrypted, ...
        raise UploadError(f"{name}: cannot extract ZIP archive ({exc})") from None
    except (EOFError, zlib.error) as exc:
        raise UploadError(f"{name}: truncated or corrupt ZIP member ({exc})") from None


def _bomb(name: str, limits: UploadLimits) -> str:
    return f"{name}: ZIP expands beyond {limits.max_zip_total_bytes / 2**20:g} MiB (limit), refused"


def _extract_members(
    zf: zipfile.ZipFile, files: list[zipfile.ZipInfo], dest: Path, limits: UploadLimits, name: str
) -> ZipMembers:
    total, skipped, kept = 0, [], {}
    for info in files:
        base = PurePosixPath(info.filename.replace("\\", "/"))
        hidden = any(part.startswith(".") or part == "__MACOSX" for part in base.parts)
        if hidden or base.name.upper() == "DICOMDIR":
            skipped.append(info.filename)
            continue
        target = dest / f"{len(kept):05d}.dcm"
        written = 0
        with zf.open(info) as src, open(target, "wb") as out:
            while block := src.read(_CHUNK):
                written += len(block)
                total += len(block)
                if total > limits.max_zip_total_bytes or written > info.file_size:
                    raise UploadError(_bomb(name, limits), 413)
                out.write(block)
        with open(target, "rb") as handle:
            head = handle.read(132)
        named_dicom = base.suffix.lower() in (".dcm", ".dicom", ".ima")
        if sniff_kind(head) == "dicom" or named_dicom or _looks_like_dicom(target):
            check_pixels(target, "dicom", limits.max_pixels, name=f"{name}:{info.filename}")
            kept[target.name] = info.filename
        else:
            target.unlink()
            skipped.append(info.filename)
    if not kept:
        raise UploadError(f"{name}: the ZIP holds no DICOM files (expected one DICOM series)", 415)
    return ZipMembers(kept, skipped)


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` (413 JSON), by Content-Length up front, else
    while the body streams in (before python-multipart spools it to disk)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"upload too large: the limit is {(self.max_bytes - MULTIPART_SLACK) / 2**20:g} MiB"
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await JSONResponse({"error": message}, status_code=413)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, message)  # FastAPI re-raises it; our handler answers JSON
            return msg

        await self.app(scope, limited, send)
