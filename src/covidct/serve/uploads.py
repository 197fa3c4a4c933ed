"""Untrusted uploads -> files on disk, checked by content (issue #7).

An upload is copied (size-limited) into a private temporary folder, its kind is sniffed from magic bytes
(never from the file name alone), and a ZIP of a DICOM series is extracted defensively: no absolute or
escaping paths, no symlinks, no encrypted members, a bounded member count and a bounded total uncompressed
size (checked against the headers *and* while inflating, since headers can lie). ZIP members are classified
from their first bytes and their DICOM header only (never a full parse), each member may only be as long as
its header announces, and the decoded pixels of a whole request are capped before anything is decoded (issue
11). Everything lives under one temporary folder ``covidct-upload-<pid>-*`` that is removed when
:func:`staged_upload` exits (or by :meth:`StagedUpload.cleanup`), whatever happens;
:func:`cleanup_stale_uploads` removes the folders of services that were killed.

Every user-fixable problem raises :class:`UploadError` with an HTTP status (400, 408, 413 or 415).
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO

import pydicom
import tifffile
from PIL import Image
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from covidct.data.dicom_limits import DicomTooLarge, inflated_size, pixel_size, read_header, slack
from covidct.errors import CovidCTError

KINDS = ("png", "jpeg", "tiff", "dicom", "zip")
SUFFIX = {"png": ".png", "jpeg": ".jpg", "tiff": ".tif", "dicom": ".dcm", "zip": ".zip"}
_CHUNK = 1 << 20
MULTIPART_SLACK = 64 * 1024  # boundary + part headers on top of the file itself
PREFIX = "covidct-upload-"
PROBE_BYTES = 64 * 1024  # first bytes of a ZIP member that decide whether it is DICOM at all
MAX_MEMBER_HEADER = 16 * 1024 * 1024  # a member's DICOM header must end (pixel data start) within this
STALE_AGE_S = 6 * 3600  # upload folders older than this are stale whoever made them (requests last minutes)
Check = Callable[[], None]  # raises (e.g. UploadError 408) when the request must stop


def _no_check() -> None:
    return None


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
    max_zip_total_bytes: int = 512 * 1024 * 1024
    max_pixels: int = 64 * 1024 * 1024  # per image / slice (decompression bombs)
    max_request_pixels: int = 64 * 1024 * 1024  # decoded pixels of all slices of one request (frames too)

    def __post_init__(self) -> None:
        for name in (
            "max_upload_bytes",
            "max_zip_members",
            "max_zip_total_bytes",
            "max_pixels",
            "max_request_pixels",
        ):
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
    pixels: int = 0  # decoded pixels announced by the headers (0 for a ZIP not yet extracted)
    root: Path | None = None  # the temporary folder holding everything of this upload

    def cleanup(self) -> None:
        """Remove the temporary folder (idempotent)."""
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)

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
    """DICOM without the 128-byte preamble (old ACR-NEMA style): pydicom must find image attributes in the
    first :data:`PROBE_BYTES` (never a parse of the whole file)."""
    with open(path, "rb") as handle:
        return _prefix_is_dicom(handle.read(PROBE_BYTES))


def _prefix_is_dicom(head: bytes) -> bool:
    try:
        ds = pydicom.dcmread(io.BytesIO(head), force=True, stop_before_pixels=True)
        return "Rows" in ds and "Columns" in ds
    except Exception:  # any parse failure means "not DICOM"
        return False


def copy_limited(src: BinaryIO, dest: Path, max_bytes: int, check: Check = _no_check) -> int:
    """Copy a stream to ``dest``, refusing (413) as soon as it exceeds ``max_bytes``."""
    size = 0
    with open(dest, "wb") as out:
        while block := src.read(_CHUNK):
            check()
            size += len(block)
            if size > max_bytes:
                raise UploadError(_too_large(max_bytes), 413)
            out.write(block)
    return size


def _too_large(max_bytes: int) -> str:
    return f"upload too large: the limit is {max_bytes / 2**20:g} MiB"


@contextmanager
def staged_upload(
    src: BinaryIO,
    filename: str | None,
    limits: UploadLimits,
    *,
    tmp_root: str | Path | None = None,
    check: Check = _no_check,
) -> Iterator[StagedUpload]:
    """Copy, sniff and (for a ZIP) extract an upload in a temporary folder removed on exit."""
    staged = stage_upload(src, filename, limits, tmp_root=tmp_root, check=check)
    try:
        yield extract_series(staged, limits, check=check) if staged.kind == "zip" else staged
    finally:
        staged.cleanup()


def stage_upload(
    src: BinaryIO,
    filename: str | None,
    limits: UploadLimits,
    *,
    tmp_root: str | Path | None = None,
    check: Check = _no_check,
) -> StagedUpload:
    """Copy and sniff an upload into a new temporary folder; single images have their pixels checked from the
    header. A ZIP stays packed (``kind == "zip"``, :func:`extract_series` unpacks it). The caller owns the
    folder: call :meth:`StagedUpload.cleanup` (done here on failure)."""
    name = PurePosixPath((filename or "upload").replace("\\", "/")).name or "upload"
    tmp = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=tmp_root))
    try:
        raw = tmp / "upload.bin"
        size = copy_limited(src, raw, limits.max_upload_bytes, check)
        if size == 0:
            raise UploadError(f"{name}: empty upload (0 bytes)")
        with open(raw, "rb") as handle:
            head = handle.read(132)
        kind = sniff_kind(head)
        if kind is None and _looks_like_dicom(raw):
            kind = "dicom"
        if kind is None:
            raise UploadError(
                f"{name}: not a supported file: expected a PNG, JPEG, TIFF or DICOM image, or a ZIP of a "
                "DICOM series (checked by content, not by name)",
                415,
            )
        if kind == "zip":
            return StagedUpload("zip", raw, name, size, root=tmp)
        path = raw.rename(tmp / f"upload{SUFFIX[kind]}")
        pixels = check_pixels(path, kind, limits.max_pixels, name=name)
        if pixels > limits.max_request_pixels:
            raise UploadError(_too_many_pixels(name, pixels, limits), 413)
        return StagedUpload(kind, path, name, size, names={str(path): name}, pixels=pixels, root=tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def extract_series(staged: StagedUpload, limits: UploadLimits, *, check: Check = _no_check) -> StagedUpload:
    """The DICOM members of a staged ZIP, extracted next to it (the archive is deleted afterwards)."""
    folder = staged.path.parent / "series"
    folder.mkdir()
    members = extract_dicom_zip(staged.path, folder, limits, name=staged.filename, check=check)
    staged.path.unlink()
    names = {str(folder / disk): f"{staged.filename}:{member}" for disk, member in members.kept.items()}
    names[str(folder)] = staged.filename
    return StagedUpload(
        "zip",
        folder,
        staged.filename,
        staged.size,
        members.skipped,
        names,
        pixels=members.pixels,
        root=staged.root,
    )


def _too_many_pixels(name: str, pixels: int, limits: UploadLimits) -> str:
    return (
        f"{name}: too many pixels to decode ({pixels} announced in total; the limit per request is "
        f"{limits.max_request_pixels})"
    )


def check_pixels(path: Path, kind: str, max_pixels: int, *, name: str) -> int:
    """Refuse (413) images whose header announces more than ``max_pixels`` per slice, before decoding; return
    the decoded pixels announced (all frames / pages; 0 when the header is unreadable: the reader reports
    it)."""
    if kind == "dicom":
        return _dicom_pixels(path, max_pixels, name=name)
    pixels = total = 0
    try:
        if kind in ("png", "jpeg"):
            with Image.open(path) as image:
                pixels = total = image.width * image.height
        elif kind == "tiff":
            with tifffile.TiffFile(path) as tif:
                sizes = [int(p.shape[0]) * int(p.shape[1]) for p in tif.pages if len(p.shape) >= 2]
                pixels, total = max(sizes, default=0), sum(sizes)
    except Exception:  # unreadable headers are reported by the reader with its own message
        return 0
    if pixels > max_pixels:
        raise UploadError(f"{name}: image too large ({pixels} pixels; the limit is {max_pixels})", 413)
    return total


def _dicom_pixels(path: Path, max_pixels: int, *, name: str, force: bool = True) -> int:
    """Decoded pixels a DICOM header announces (frames x rows x columns x samples), from the header only; a
    deflated file's inflated length is bounded by what its header announces."""
    try:
        header = read_header(path, force=force)
        size = pixel_size(header.dataset, name)
        if size.frame_pixels > max_pixels:
            raise UploadError(
                f"{name}: image too large ({size.frame_pixels} pixels per frame; the limit is {max_pixels})",
                413,
            )
        if header.deflated:
            inflated_size(path, (header.pixel_offset or 0) + size.nbytes + slack(size.nbytes))
    except DicomTooLarge as exc:
        raise UploadError(f"{name}: {exc.reason}", 413) from None
    except UploadError:
        raise
    except Exception:  # unreadable headers are reported by the reader with its own message
        return 0
    return size.pixels


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
    pixels: int = 0  # decoded pixels the kept members announce


def extract_dicom_zip(
    archive: Path, dest: Path, limits: UploadLimits, *, name: str = "upload.zip", check: Check = _no_check
) -> ZipMembers:
    """Extract the DICOM members of ``archive`` flat into ``dest`` (as ``00000.dcm``...).

    Names inside the archive are never used as paths on disk, and any dangerous member refuses the whole
    upload. Members are classified from their first bytes and DICOM header; ``check`` runs between chunks.
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
            return _extract_members(zf, files, dest, limits, name, check)
    except zipfile.BadZipFile as exc:
        raise UploadError(f"{name}: corrupt ZIP archive ({exc})") from None
    except (NotImplementedError, RuntimeError) as exc:  # unsupported compression, encrypted, ...
        raise UploadError(f"{name}: cannot extract ZIP archive ({exc})") from None
    except (EOFError, zlib.error) as exc:
        raise UploadError(f"{name}: truncated or corrupt ZIP member ({exc})") from None


def _bomb(name: str, limits: UploadLimits) -> str:
    return f"{name}: ZIP expands beyond {limits.max_zip_total_bytes / 2**20:g} MiB (limit), refused"


def _extract_members(
    zf: zipfile.ZipFile,
    files: list[zipfile.ZipInfo],
    dest: Path,
    limits: UploadLimits,
    name: str,
    check: Check,
) -> ZipMembers:
    total, pixels = 0, 0
    skipped: list[str] = []
    kept: dict[str, str] = {}
    for info in files:
        check()
        base = PurePosixPath(info.filename.replace("\\", "/"))
        hidden = any(part.startswith(".") or part == "__MACOSX" for part in base.parts)
        if hidden or base.name.upper() == "DICOMDIR":
            skipped.append(info.filename)
            continue
        member = f"{name}:{info.filename}"
        target = dest / f"{len(kept):05d}.dcm"
        with zf.open(info) as src:
            head = src.read(PROBE_BYTES)
            total += len(head)
            if total > limits.max_zip_total_bytes or len(head) > info.file_size:
                raise UploadError(_bomb(name, limits), 413)
            marked = sniff_kind(head) == "dicom"
            bare = not marked and _prefix_is_dicom(head)
            if not (marked or bare or base.suffix.lower() in (".dcm", ".dicom", ".ima")):
                skipped.append(info.filename)  # never read further than its first bytes
                continue
            with open(target, "wb") as out:  # a .dcm that is not DICOM is kept: the reader says what is wrong
                out.write(head)
                probe = marked or bare
                total += _copy_member(src, out, target, info, total, limits, name, member, check, probe=probe)
        count = _dicom_pixels(target, limits.max_pixels, name=member, force=bare)
        pixels += count
        if pixels > limits.max_request_pixels:
            raise UploadError(_too_many_pixels(name, pixels, limits), 413)
        kept[target.name] = info.filename
    if not kept:
        raise UploadError(f"{name}: the ZIP holds no DICOM files (expected one DICOM series)", 415)
    return ZipMembers(kept, skipped, pixels)


def _copy_member(
    src: IO[bytes],
    out: BinaryIO,
    target: Path,
    info: zipfile.ZipInfo,
    total: int,
    limits: UploadLimits,
    name: str,
    member: str,
    check: Check,
    *,
    probe: bool,
) -> int:
    """Stream the rest of a DICOM member to ``out`` (its first bytes are there already); every inflated byte
    counts against the request's limit as it arrives, and once the member's header is complete, the member may
    not grow beyond what the header announces. Returns the bytes added."""
    written = start = out.tell()
    cap: int | None = None
    probe_at = min(info.file_size, 1 << 20) if probe else info.file_size + 1
    while block := src.read(_CHUNK):
        check()
        written += len(block)
        if total + written - start > limits.max_zip_total_bytes or written > info.file_size:
            raise UploadError(_bomb(name, limits), 413)
        if cap is not None and written > cap:
            raise UploadError(
                f"{member}: member is longer than its DICOM header announces ({cap} bytes at most), refused",
                413,
            )
        out.write(block)
        if cap is None and written >= probe_at:
            out.flush()
            try:
                header = read_header(target, force=True)
                size = pixel_size(header.dataset, member)
            except DicomTooLarge as exc:
                raise UploadError(f"{member}: {exc.reason}", 413) from None
            except Exception:  # an incomplete header: read on
                header = None
            if header is not None and header.pixel_offset is not None:
                if size.frame_pixels > limits.max_pixels:
                    raise UploadError(
                        f"{member}: image too large ({size.frame_pixels} pixels per frame; the limit is "
                        f"{limits.max_pixels})",
                        413,
                    )
                cap = header.pixel_offset + 16 + size.nbytes + slack(size.nbytes)
            elif written >= MAX_MEMBER_HEADER:
                raise UploadError(f"{member}: no DICOM pixel data within the first 16 MiB, refused", 413)
            else:
                probe_at = min(info.file_size, 4 * probe_at)
    return written - start


def cleanup_stale_uploads(
    tmp_root: str | Path | None = None, *, max_age_s: float = STALE_AGE_S
) -> list[Path]:
    """Remove ``covidct-upload-*`` folders left by a killed service: those whose process (the pid in the name)
    is gone, and any older than ``max_age_s``. Folders of live services (this one included) are kept; only
    this user's folders are touched. Returns the folders removed."""
    root = Path(tmp_root) if tmp_root is not None else Path(tempfile.gettempdir())
    removed: list[Path] = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        if not entry.name.startswith(PREFIX):
            continue
        try:
            info = entry.lstat()
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            continue
        pid_text = entry.name[len(PREFIX) :].split("-", 1)[0]
        pid = int(pid_text) if pid_text.isdigit() and "-" in entry.name[len(PREFIX) :] else None
        old = now - info.st_mtime > max_age_s
        if old or (pid is not None and pid != os.getpid() and not _alive(pid)):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except OSError:
        return False
    return True


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
