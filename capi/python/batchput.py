"""batchput from Python, through ctypes and the library's C ABI.

    import batchput

    up = batchput.Uploader(endpoint="http://127.0.0.1:9000", bucket="photos",
                           access_key="AKID", secret_key="SECRET",
                           part_size="64MiB")
    job = up.upload([("/data/a.jpg", "2026/a.jpg"), ("/data/b.jpg", "2026/b.jpg")])
    while not job.wait(timeout=1.0):
        p = job.poll()
        print(f"{p.bytes_done} / {p.bytes_total} bytes")
    for report in job:
        print(report.key, report.state.name, report.etag)
    job.check()          # raises BatchputError unless the job succeeded

The library is found at $BATCHPUT_LIB, else next to this module, else in the
repository's target/release then target/debug. Every call releases the GIL
(ctypes does), so another Python thread may stop a job while one waits on
it; the library never calls back into Python.

Options are the C ABI's string options (bp_config_set): any value is passed
as str(value). An unknown option or a bad value raises BatchputError naming
the option.

The library's log goes to Python's logging, pulled, never pushed:
set_log_level(LogLevel.DEBUG) turns it on, and drain_log() moves the records
waiting into the "batchput" logger; call it where you poll (Job.wait does not
call it for you).
"""

from __future__ import annotations

import ctypes
import enum
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Optional, Tuple, Union

__all__ = [
    "BatchputError",
    "FileReport",
    "FileState",
    "Integrity",
    "Job",
    "JobState",
    "LogLevel",
    "Progress",
    "Status",
    "StoredObject",
    "Uploader",
    "drain_log",
    "set_log_level",
    "version",
    "version_number",
]


class Status(enum.IntEnum):
    """bp_status: what a call returned (0 is success)."""

    OK = 0
    PENDING = 1
    INVALID_ARGUMENT = 2
    INVALID_UTF8 = 3
    MISUSE = 4
    INVALID_INPUT = 5
    LOCAL_IO = 6
    FILE_CHANGED = 7
    SERVER = 8
    NETWORK = 9
    TIMEOUT = 10
    INTEGRITY = 11
    STOPPED = 12
    PAUSED = 13
    JOURNAL = 14
    JOURNAL_LOCKED = 15
    INTERNAL = 16
    PANIC = 17
    EMPTY = 18
    LOGGER_IN_USE = 19
    DONE = 20
    BUFFER_TOO_SMALL = 21


class JobState(enum.IntEnum):
    """bp_job_state."""

    QUEUED = 0
    RUNNING = 1
    SUCCEEDED = 2
    FAILED = 3
    STOPPED = 4
    PAUSED = 5


class FileState(enum.IntEnum):
    """bp_file_state."""

    NOT_STARTED = 0
    RUNNING = 1
    COMPLETED = 2
    FAILED = 3
    ABORTED = 4
    PAUSED = 5
    ABORT_FAILED = 6
    UNKNOWN = 7


class Integrity(enum.IntEnum):
    """bp_integrity: how a job's data is checked (Progress.integrity_used)."""

    UNKNOWN = 0  # not settled yet, or nothing was sent
    ETAG_MD5 = 1
    CONTENT_MD5 = 2
    CRC32C = 3
    NONE = 4


class LogLevel(enum.IntEnum):
    """bp_log_level: how much the library logs."""

    OFF = 0
    ERROR = 1
    WARN = 2
    INFO = 3
    DEBUG = 4
    TRACE = 5


def _enum(cls, value: int):
    try:
        return cls(value)
    except ValueError:  # a value from a newer library: keep the number
        return value


def _status(value: int) -> Union[Status, int]:
    return _enum(Status, value)


class BatchputError(Exception):
    """A failed call or job: `status` (a Status) and the library's message."""

    def __init__(self, status: int, message: str):
        self.status = _status(status)
        self.message = message
        name = self.status.name if isinstance(self.status, Status) else str(status)
        super().__init__(f"{message} [{name}]" if message else name)


# ---------------------------------------------------------------- the C ABI


class _Opaque(ctypes.Structure):
    pass


class _Config(_Opaque):
    pass


class _Uploader(_Opaque):
    pass


class _Batch(_Opaque):
    pass


class _Job(_Opaque):
    pass


class _List(_Opaque):
    pass


# bp_status, bp_job_state, bp_file_state, bp_integrity and bp_log_level are
# uint32_t in C.
_u32 = ctypes.c_uint32


class _Sized(ctypes.Structure):
    """A struct the library fills: struct_size is set to our sizeof, so a
    newer library writes only the fields we know."""

    def __init__(self) -> None:
        super().__init__()
        self.struct_size = ctypes.sizeof(self)


class _Object(_Sized):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("key", ctypes.c_char_p),
        ("etag", ctypes.c_char_p),
        ("size", ctypes.c_uint64),
        ("last_modified", ctypes.c_int64),
    ]


class _Progress(_Sized):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("state", _u32),
        ("error", _u32),
        ("files_total", ctypes.c_uint64),
        ("files_done", ctypes.c_uint64),
        ("files_failed", ctypes.c_uint64),
        ("parts_total", ctypes.c_uint64),
        ("parts_done", ctypes.c_uint64),
        ("bytes_total", ctypes.c_uint64),
        ("bytes_done", ctypes.c_uint64),
        ("speed_bps", ctypes.c_double),
        ("avg_speed_bps", ctypes.c_double),
        ("peak_speed_bps", ctypes.c_double),
        ("elapsed_ms", ctypes.c_uint64),
        ("bytes_sent", ctypes.c_uint64),
        ("integrity_used", _u32),
    ]


class _FileReport(_Sized):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("path", ctypes.c_char_p),
        ("key", ctypes.c_char_p),
        ("etag", ctypes.c_char_p),
        ("size", ctypes.c_uint64),
        ("bytes_done", ctypes.c_uint64),
        ("avg_speed_bps", ctypes.c_double),
        ("peak_speed_bps", ctypes.c_double),
        ("state", _u32),
        ("error", _u32),
        ("upload_id", ctypes.c_char_p),
        ("verified", _u32),
    ]


# bp_verified: how a downloaded file was checked, by its report name.
_VERIFIED = {1: "md5", 2: "multipart-etag", 3: "size", 4: "crc32c"}


WAIT_FOREVER = 0xFFFFFFFF  # BP_WAIT_FOREVER


def _library_path() -> str:
    env = os.environ.get("BATCHPUT_LIB")
    if env:
        return env
    name = {"darwin": "libbatchput.dylib", "win32": "batchput.dll"}.get(
        sys.platform, "libbatchput.so"
    )
    here = Path(__file__).resolve().parent
    repo = here.parent.parent
    for candidate in (
        here / name,
        repo / "target" / "release" / name,
        repo / "target" / "debug" / name,
    ):
        if candidate.exists():
            return str(candidate)
    raise OSError(
        f"cannot find {name}: set BATCHPUT_LIB, put it next to {__file__}, "
        "or run `cargo build --release` in the repository"
    )


def _load() -> ctypes.CDLL:
    lib = ctypes.CDLL(_library_path())
    P = ctypes.POINTER
    c_char_p, c_size_t = ctypes.c_char_p, ctypes.c_size_t
    status = _u32
    decls = {
        "bp_version_number": ([], ctypes.c_uint32),
        "bp_version": ([], c_char_p),
        "bp_status_str": ([_u32], c_char_p),
        "bp_set_log_level": ([_u32], status),
        "bp_log_next": ([P(_u32), ctypes.c_char_p, c_size_t, P(c_size_t)], status),
        "bp_last_error": ([ctypes.c_char_p, c_size_t, P(c_size_t)], status),
        "bp_config_new": ([], P(_Config)),
        "bp_config_set": ([P(_Config), c_char_p, c_char_p], status),
        "bp_config_free": ([P(_Config)], None),
        "bp_uploader_new": ([P(_Config), P(P(_Uploader))], status),
        "bp_uploader_free": ([P(_Uploader)], None),
        "bp_batch_new": ([], P(_Batch)),
        "bp_batch_add": ([P(_Batch), c_char_p, c_char_p], status),
        "bp_batch_set_journal": ([P(_Batch), c_char_p], status),
        "bp_batch_free": ([P(_Batch)], None),
        "bp_start": ([P(_Uploader), P(_Batch), P(P(_Job))], status),
        "bp_resume": ([P(_Uploader), c_char_p, P(P(_Job))], status),
        "bp_download_start": ([P(_Uploader), P(_Batch), P(P(_Job))], status),
        "bp_download_prefix": (
            [P(_Uploader), c_char_p, c_char_p, c_char_p, P(P(_Job))],
            status,
        ),
        "bp_cleanup": ([P(_Uploader), c_char_p, ctypes.c_uint64, P(ctypes.c_uint64)], status),
        "bp_job_poll": ([P(_Job), P(_Progress)], status),
        "bp_job_wait": ([P(_Job), ctypes.c_uint32], status),
        "bp_job_stop": ([P(_Job)], status),
        "bp_job_pause": ([P(_Job)], status),
        "bp_job_file_count": ([P(_Job)], c_size_t),
        "bp_job_file": ([P(_Job), c_size_t, P(_FileReport)], status),
        "bp_job_last_error": ([P(_Job), ctypes.c_char_p, c_size_t, P(c_size_t)], status),
        "bp_job_free": ([P(_Job)], None),
        "bp_list_open": ([P(_Uploader), c_char_p, P(P(_List))], status),
        "bp_list_next": ([P(_List), P(_Object)], status),
        "bp_list_free": ([P(_List)], None),
        "bp_delete_prefix": ([P(_Uploader), c_char_p, P(ctypes.c_uint64)], status),
        "bp_presign": (
            [P(_Uploader), c_char_p, c_char_p, ctypes.c_uint32, c_char_p, c_size_t, P(c_size_t)],
            status,
        ),
    }
    for name, (argtypes, restype) in decls.items():
        fn = getattr(lib, name)
        fn.argtypes = argtypes
        fn.restype = restype
    return lib


lib = _load()
"""The raw C functions, with argtypes and restype declared (bp_* names)."""


def _copy_message(call) -> str:
    """Calls a bp_*_last_error-style function twice: once for the length,
    once with a buffer that fits."""
    n = ctypes.c_size_t(0)
    call(None, 0, ctypes.byref(n))
    buf = ctypes.create_string_buffer(n.value + 1)
    call(buf, len(buf), ctypes.byref(n))
    return buf.value.decode("utf-8", "replace")


def last_error() -> str:
    """This thread's last error message (bp_last_error)."""
    return _copy_message(lib.bp_last_error)


def _check(status: int) -> None:
    if status != Status.OK:
        raise BatchputError(status, last_error())


def _text(value: Union[str, bytes, os.PathLike], path: bool = False) -> bytes:
    """UTF-8 bytes for the library; bytes pass through (the library checks
    them). Paths from os.listdir that are not UTF-8 keep their bytes, so the
    library can say which one it refuses."""
    if isinstance(value, bytes):
        return value
    if path:
        return os.fsencode(value)
    return str(value).encode("utf-8", "surrogateescape")


def version() -> str:
    """The library's version ("0.2.0")."""
    return lib.bp_version().decode()


def version_number() -> int:
    """MAJOR * 1000000 + MINOR * 1000 + PATCH."""
    return lib.bp_version_number()


# ---------------------------------------------------------------- logging

_PYTHON_LEVELS = {
    LogLevel.ERROR: logging.ERROR,
    LogLevel.WARN: logging.WARNING,
    LogLevel.INFO: logging.INFO,
    LogLevel.DEBUG: logging.DEBUG,
    LogLevel.TRACE: logging.DEBUG - 5,
}


def set_log_level(level: Union[LogLevel, int]) -> None:
    """Sets how much the library logs (LogLevel.OFF .. LogLevel.TRACE); the
    first call installs its in-memory log, which drain_log() empties. Raises
    BatchputError (LOGGER_IN_USE) when the process already has a Rust logger."""
    _check(lib.bp_set_log_level(int(level)))


def drain_log(logger: Optional[logging.Logger] = None) -> int:
    """Moves every library log record waiting into `logger` (default: the
    "batchput" logger), each at its level ("target: message"), and returns
    how many. Never blocks; call it from your own loop, any thread."""
    logger = logger or logging.getLogger("batchput")
    level = _u32(0)
    n = ctypes.c_size_t(0)
    buf = ctypes.create_string_buffer(4096 + 1)  # the longest record fits
    count = 0
    while lib.bp_log_next(ctypes.byref(level), buf, len(buf), ctypes.byref(n)) == Status.OK:
        python_level = _PYTHON_LEVELS.get(_enum(LogLevel, level.value), logging.WARNING)
        logger.log(python_level, "%s", buf.value.decode("utf-8", "replace"))
        count += 1
    return count


# ---------------------------------------------------------------- wrapper


@dataclass(frozen=True)
class Progress:
    """A job's snapshot (bp_progress). Bytes count what the server acknowledged."""

    state: JobState
    files_total: int
    files_done: int
    files_failed: int
    parts_total: int
    parts_done: int
    bytes_total: int
    bytes_done: int
    speed_bps: float
    avg_speed_bps: float
    peak_speed_bps: float
    elapsed_ms: int
    error: Union[Status, int]
    bytes_sent: int = 0
    """Bytes written to the network, acknowledged or not (goes back down on a retry)."""
    integrity_used: Union[Integrity, int] = Integrity.UNKNOWN
    """How the job's data is checked: with integrity=auto, CRC32C where the
    store verifies it, else ETAG_MD5; UNKNOWN until the job settles it."""


@dataclass(frozen=True)
class FileReport:
    """What happened to one file (bp_file_report)."""

    path: str
    key: str
    size: int
    bytes_done: int
    avg_speed_bps: float
    peak_speed_bps: float
    state: FileState
    etag: Optional[str]
    error: Union[Status, int]
    upload_id: Optional[str] = None
    """The multipart upload open on the server, if any (paused, ABORT_FAILED)."""
    verified: Optional[str] = None
    """A finished download: how it was checked ("md5", "multipart-etag",
    "size", "crc32c"); None for uploads and unfinished downloads."""


@dataclass(frozen=True)
class StoredObject:
    """An object as a listing gives it (bp_object)."""

    key: str
    size: int
    etag: str
    last_modified: Optional[int]
    """Seconds since the Unix epoch; None when the server does not say."""


Files = Union[Mapping[Union[str, os.PathLike], str], Iterable[Tuple[Union[str, os.PathLike], str]]]


class Uploader:
    """An uploader: one bucket, a pool of workers; jobs run one after another.

    `Uploader(endpoint=..., bucket=..., access_key=..., secret_key=..., **more)`
    takes any bp_config_set option; a key with a dot (meta.owner) goes in
    `options`. Closing it (or leaving a `with` block) stops its running
    jobs, aborting their uploads.
    """

    def __init__(self, options: Optional[Mapping[str, object]] = None, **kwargs: object):
        merged = dict(options or {})
        merged.update(kwargs)
        cfg = lib.bp_config_new()
        if not cfg:
            raise BatchputError(Status.INTERNAL, "bp_config_new returned NULL")
        try:
            for key, value in merged.items():
                _check(lib.bp_config_set(cfg, _text(key), _text(value)))
            handle = ctypes.POINTER(_Uploader)()
            _check(lib.bp_uploader_new(cfg, ctypes.byref(handle)))
        finally:
            lib.bp_config_free(cfg)
        self._handle = handle

    def _live(self):
        if not self._handle:
            raise BatchputError(Status.MISUSE, "the uploader is closed")
        return self._handle

    def upload(self, files: Files, journal: Union[str, os.PathLike, None] = None) -> "Job":
        """Starts a job for `files`: (path, key) pairs, or a {path: key}
        mapping. Every file is checked before anything is sent; a bad batch
        raises BatchputError. `journal` makes pause and resume possible."""
        return self._batch_job(lib.bp_start, files, journal)

    def _batch_job(self, start, files: Files, journal) -> "Job":
        """A bp_batch of `files` started by `start` (bp_start or bp_download_start)."""
        pairs = files.items() if isinstance(files, Mapping) else files
        batch = lib.bp_batch_new()
        if not batch:
            raise BatchputError(Status.INTERNAL, "bp_batch_new returned NULL")
        try:
            for path, key in pairs:
                _check(lib.bp_batch_add(batch, _text(path, path=True), _text(key)))
            if journal is not None:
                _check(lib.bp_batch_set_journal(batch, _text(journal, path=True)))
            handle = ctypes.POINTER(_Job)()
            _check(start(self._live(), batch, ctypes.byref(handle)))
        finally:
            lib.bp_batch_free(batch)
        return Job(handle, self)

    def download(self, files: Files, journal: Union[str, os.PathLike, None] = None) -> "Job":
        """Starts a download job for `files`: (local destination path, key)
        pairs, or a {path: key} mapping. Every key, destination and object
        is checked before a byte moves; each file takes its name only once
        complete and checked (FileReport.verified)."""
        return self._batch_job(lib.bp_download_start, files, journal)

    def download_prefix(
        self,
        prefix: str,
        dir: Union[str, os.PathLike],
        journal: Union[str, os.PathLike, None] = None,
    ) -> "Job":
        """Lists every object under `prefix` and downloads it below `dir`
        (a key's path is what follows the prefix's last '/'). A key that
        would land outside `dir` raises BatchputError naming it, and nothing
        is written."""
        handle = ctypes.POINTER(_Job)()
        j = _text(journal, path=True) if journal is not None else None
        _check(
            lib.bp_download_prefix(
                self._live(), _text(prefix), _text(dir, path=True), j, ctypes.byref(handle)
            )
        )
        return Job(handle, self)

    def resume(self, journal: Union[str, os.PathLike]) -> "Job":
        """Continues the job recorded in `journal` (paused, crashed, killed)."""
        handle = ctypes.POINTER(_Job)()
        _check(lib.bp_resume(self._live(), _text(journal, path=True), ctypes.byref(handle)))
        return Job(handle, self)

    def cleanup(self, prefix: str = "", older_than_secs: int = 0) -> int:
        """Aborts multipart uploads under `prefix` older than the age; returns how many."""
        n = ctypes.c_uint64(0)
        _check(lib.bp_cleanup(self._live(), _text(prefix), older_than_secs, ctypes.byref(n)))
        return n.value

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        """The objects under `prefix` ("" for the whole bucket), keys exact,
        pages of up to 1,000 fetched as the iteration needs them."""
        handle = ctypes.POINTER(_List)()
        _check(lib.bp_list_open(self._live(), _text(prefix), ctypes.byref(handle)))
        try:
            while True:
                o = _Object()
                st = lib.bp_list_next(handle, ctypes.byref(o))
                if st == Status.DONE:
                    return
                _check(st)
                yield StoredObject(
                    key=o.key.decode("utf-8"),
                    size=o.size,
                    etag=o.etag.decode("utf-8"),
                    last_modified=None if o.last_modified < 0 else o.last_modified,
                )
        finally:
            lib.bp_list_free(handle)

    def delete_prefix(self, prefix: str) -> int:
        """Deletes every object under `prefix` ("" for the whole bucket) and
        returns how many. When some could not be deleted it raises
        BatchputError naming the first and how many, with `.deleted` set."""
        n = ctypes.c_uint64(0)
        st = lib.bp_delete_prefix(self._live(), _text(prefix), ctypes.byref(n))
        if st != Status.OK:
            e = BatchputError(st, last_error())
            e.deleted = n.value
            raise e
        return n.value

    def presign(self, method: str, key: str, expires_secs: int = 3600) -> str:
        """A presigned URL letting anyone GET (or PUT) `key` with a plain
        HTTP client for `expires_secs` seconds (1 to 604800)."""
        need = ctypes.c_size_t(0)
        args = (self._live(), _text(method), _text(key), expires_secs)
        st = lib.bp_presign(*args, None, 0, ctypes.byref(need))
        if st != Status.BUFFER_TOO_SMALL:
            _check(st)
        buf = ctypes.create_string_buffer(need.value)
        _check(lib.bp_presign(*args, buf, len(buf), ctypes.byref(need)))
        return buf.value.decode("utf-8")

    def close(self) -> None:
        """Stops running jobs (aborting their uploads) and frees the uploader."""
        handle, self._handle = getattr(self, "_handle", None), None
        if handle:
            lib.bp_uploader_free(handle)

    def __enter__(self) -> "Uploader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


class Job:
    """A started batch. poll(), wait(), stop() and pause() may be called from
    any thread; iterating gives each file's FileReport."""

    def __init__(self, handle, uploader: Uploader):
        self._handle = handle
        # Freeing the uploader stops its jobs: keep it alive with the job.
        self._uploader = uploader

    def _live(self):
        if not self._handle:
            raise BatchputError(Status.MISUSE, "the job is closed")
        return self._handle

    def poll(self) -> Progress:
        """A snapshot of the job's progress; never blocks."""
        p = _Progress()
        _check(lib.bp_job_poll(self._live(), ctypes.byref(p)))
        return Progress(
            state=_enum(JobState, p.state),
            files_total=p.files_total,
            files_done=p.files_done,
            files_failed=p.files_failed,
            parts_total=p.parts_total,
            parts_done=p.parts_done,
            bytes_total=p.bytes_total,
            bytes_done=p.bytes_done,
            speed_bps=p.speed_bps,
            avg_speed_bps=p.avg_speed_bps,
            peak_speed_bps=p.peak_speed_bps,
            elapsed_ms=p.elapsed_ms,
            error=_status(p.error),
            bytes_sent=p.bytes_sent,
            integrity_used=_enum(Integrity, p.integrity_used),
        )

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Waits until the job ends or `timeout` seconds pass (None: no
        limit); returns whether it ended."""
        ms = WAIT_FOREVER if timeout is None else max(0, min(int(timeout * 1000), WAIT_FOREVER - 1))
        status = lib.bp_job_wait(self._live(), ms)
        if status == Status.PENDING:
            return False
        _check(status)
        return True

    def stop(self) -> None:
        """Stops the job and aborts its open uploads; returns at once. Idempotent."""
        _check(lib.bp_job_stop(self._live()))

    def pause(self) -> None:
        """Stops the job but keeps its uploads for Uploader.resume (needs a journal)."""
        _check(lib.bp_job_pause(self._live()))

    @property
    def error(self) -> Optional[str]:
        """The message of the job's first fatal error (or the stop reason), or None."""
        handle = self._live()
        text = _copy_message(lambda buf, n, w: lib.bp_job_last_error(handle, buf, n, w))
        return text or None

    def check(self) -> None:
        """Raises BatchputError unless the job succeeded (waiting for it first)."""
        self.wait()
        p = self.poll()
        if p.state != JobState.SUCCEEDED:
            raise BatchputError(p.error, self.error or str(p.state))

    def __len__(self) -> int:
        return lib.bp_job_file_count(self._live())

    def file(self, index: int) -> FileReport:
        """The report of file `index` (batch order)."""
        r = _FileReport()
        _check(lib.bp_job_file(self._live(), index, ctypes.byref(r)))
        return FileReport(
            path=os.fsdecode(r.path),
            key=r.key.decode("utf-8", "replace"),
            size=r.size,
            bytes_done=r.bytes_done,
            avg_speed_bps=r.avg_speed_bps,
            peak_speed_bps=r.peak_speed_bps,
            state=_enum(FileState, r.state),
            etag=r.etag.decode() if r.etag is not None else None,
            error=_status(r.error),
            upload_id=r.upload_id.decode() if r.upload_id is not None else None,
            verified=_VERIFIED.get(r.verified),
        )

    def __iter__(self) -> Iterator[FileReport]:
        for i in range(len(self)):
            yield self.file(i)

    def close(self) -> None:
        """Frees the job, stopping it first if it still runs (blocks until it ended)."""
        handle, self._handle = getattr(self, "_handle", None), None
        if handle:
            lib.bp_job_free(handle)

    def __enter__(self) -> "Job":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
