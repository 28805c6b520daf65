"""Tests of the ctypes module against a real S3 server; plain Python, no pytest.

    BATCHPUT_TEST_ENDPOINT=http://127.0.0.1:9000 BATCHPUT_TEST_BUCKET=b \
    BATCHPUT_TEST_ACCESS_KEY=... BATCHPUT_TEST_SECRET_KEY=... \
    BATCHPUT_TEST_WORKDIR=/tmp/w python3 capi/python/test_batchput.py

`cargo test --test tests ffi::python` runs it against s3s-fs and then checks
from Rust what it uploaded: every file under $BATCHPUT_TEST_WORKDIR/python/success
is the object python/success/<name> with the same bytes, nothing under
python/stop exists, and no multipart upload is left open.
Prints "N passed, M failed" last; exits 1 when a test failed.
"""

import ctypes
import hashlib
import logging
import os
import sys
import threading
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import batchput  # noqa: E402
from batchput import BatchputError, FileState, JobState, Status  # noqa: E402

MIB = 1 << 20


def env(name):
    value = os.environ.get(name)
    if not value:
        print(f"{name} is not set: this test needs an S3 server (see the docstring)")
        sys.exit(2)
    return value


SERVER = dict(
    endpoint=env("BATCHPUT_TEST_ENDPOINT"),
    bucket=env("BATCHPUT_TEST_BUCKET"),
    access_key=env("BATCHPUT_TEST_ACCESS_KEY"),
    secret_key=env("BATCHPUT_TEST_SECRET_KEY"),
)
WORKDIR = Path(env("BATCHPUT_TEST_WORKDIR")) / "python"


def make_files(name, sizes):
    """Files of the given sizes under WORKDIR/name, with bytes that differ per file."""
    folder = WORKDIR / name
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, size in enumerate(sizes):
        path = folder / f"file-{i}.bin"
        block = hashlib.sha256(f"{name}-{i}".encode()).digest()
        path.write_bytes((block * (size // len(block) + 1))[:size])
        files.append((str(path), f"python/{name}/{path.name}"))
    return files


def expect_error(status, words, call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except BatchputError as e:
        assert e.status == status, f"status {e.status!r}, wanted {status!r}: {e}"
        for w in words:
            assert w in e.message, f"{w!r} not in {e.message!r}"
        return e
    raise AssertionError(f"no error from {call.__name__}{args}")


def test_version_matches_the_library():
    assert batchput.version_number() == int(batchput.version().split(".")[0]) * 1_000_000 + int(
        batchput.version().split(".")[1]
    ) * 1_000 + int(batchput.version().split(".")[2])


def thread_count():
    return len(os.listdir("/proc/self/task"))


def test_success():
    files = make_files("success", [0, 1000, 6 * MIB + 7])
    threads_before = thread_count()
    with batchput.Uploader(SERVER, part_size="5MiB", multipart_threshold="5MiB", workers=4) as up:
        job = up.upload(files)
        assert len(job) == 3
        while not job.wait(timeout=0.2):
            p = job.poll()
            if p.state not in (JobState.QUEUED, JobState.RUNNING):
                # It ended after wait looked: wait must now say so at once.
                assert job.wait(timeout=0), p
                break
        job.check()
        p = job.poll()
        assert p.state == JobState.SUCCEEDED, p
        assert p.error == Status.OK
        assert p.files_done == 3 and p.bytes_done == p.bytes_total == 6 * MIB + 1007, p
        assert p.parts_done == p.parts_total == 4, p  # two single PUTs and two parts
        # integrity=auto (the default) on s3s-fs, which takes any CRC32C on a part.
        assert p.integrity_used == batchput.Integrity.ETAG_MD5, p
        assert job.error is None
        reports = list(job)
        for report, (path, key) in zip(reports, files):
            assert report.path == path and report.key == key, report
            assert report.state == FileState.COMPLETED, report
            assert report.bytes_done == report.size == os.path.getsize(path)
            assert report.upload_id is None, report  # completed: no upload left open
        # Single PUTs get the MD5 of their bytes as ETag; the multipart one "-2".
        assert reports[1].etag == hashlib.md5(Path(files[1][0]).read_bytes()).hexdigest()
        assert reports[2].etag.endswith("-2"), reports[2].etag
        # Polling after the end keeps giving the final snapshot.
        assert job.poll() == p
        job.close()
        job.close()  # closing twice is harmless in the wrapper
        assert thread_count() > threads_before  # the pool and the coordinator
    # Closing the uploader joined every thread it started.
    assert thread_count() == threads_before, (thread_count(), threads_before)


def test_stop_from_another_thread():
    # The last one PutObject, more than the rate limit lets through before
    # the stop: in flight like the others then, whatever the order.
    files = make_files("stop", [12 * MIB, 2 * MIB, 900 * 1024])
    up = batchput.Uploader(
        SERVER, part_size="5MiB", multipart_threshold="1MiB", rate_limit="1MiB", workers=4
    )
    job = up.upload(files)
    stopper = threading.Timer(0.3, job.stop)
    stopper.start()
    started = time.monotonic()
    assert job.wait(timeout=60), "the job did not end after stop"
    stopper.join()
    assert time.monotonic() - started < 10, "stop took too long"
    job.stop()  # stop again: a no-op
    p = job.poll()
    assert p.state == JobState.STOPPED, p
    assert p.error == Status.STOPPED, p
    assert "stopped" in job.error, job.error
    states = [r.state for r in job]
    assert all(s in (FileState.ABORTED, FileState.NOT_STARTED) for s in states), states
    assert FileState.ABORTED in states, states
    expect_error(Status.STOPPED, ["stopped"], job.check)
    up.close()


def test_bad_key():
    files = make_files("badkey", [10])
    with batchput.Uploader(SERVER) as up:
        e = expect_error(Status.INVALID_ARGUMENT, ["bp_batch_add", "'key'", "empty"], up.upload, [(files[0][0], "")])
        assert "must not be empty" in str(e)
        expect_error(Status.INVALID_ARGUMENT, ["'key'", ".."], up.upload, [(files[0][0], "a/../b")])
        expect_error(Status.INVALID_UTF8, ["'key'", "UTF-8"], up.upload, [(files[0][0], b"bad-\xff")])
        expect_error(Status.INVALID_UTF8, ["'path'", "UTF-8"], up.upload, [(b"/tmp/\xfe", "k")])
        expect_error(Status.INVALID_INPUT, ["duplicate key"], up.upload, [(files[0][0], "k"), (files[0][0], "k")])
        expect_error(Status.LOCAL_IO, ["no such file"], up.upload, [(str(WORKDIR / "missing"), "k")])
        expect_error(Status.INVALID_INPUT, ["empty"], up.upload, [])


def test_bad_option():
    expect_error(Status.INVALID_ARGUMENT, ["unknown option 'colour'"], batchput.Uploader, SERVER, colour="blue")
    expect_error(Status.INVALID_ARGUMENT, ["'part_size'", "12 apples"], batchput.Uploader, SERVER, part_size="12 apples")
    for value in ("0", "-1", "1e99"):
        expect_error(Status.INVALID_ARGUMENT, ["'workers'", value], batchput.Uploader, SERVER, workers=value)
    expect_error(Status.INVALID_ARGUMENT, ["'bucket'", "not set"], batchput.Uploader, endpoint=SERVER["endpoint"])


def test_pause_without_journal_is_misuse():
    files = make_files("pause", [10])
    with batchput.Uploader(SERVER) as up:
        job = up.upload(files)
        expect_error(Status.MISUSE, ["journal"], job.pause)
        job.check()


def test_wait_zero_and_null_handles():
    # The raw functions refuse NULL with a message naming the argument.
    lib = batchput.lib
    p = batchput._Progress()
    assert lib.bp_job_poll(None, ctypes.byref(p)) == Status.INVALID_ARGUMENT
    assert "bp_job_poll: argument 'job' is NULL" in batchput.last_error()
    assert lib.bp_job_wait(None, 0) == Status.INVALID_ARGUMENT
    assert lib.bp_config_set(None, b"workers", b"1") == Status.INVALID_ARGUMENT
    assert "'cfg'" in batchput.last_error()
    lib.bp_job_free(None)
    lib.bp_uploader_free(None)
    # A buffer of length 1 gets just the NUL; written says how long the message is.
    buf = ctypes.create_string_buffer(b"x" * 8)
    n = ctypes.c_size_t(0)
    assert lib.bp_last_error(buf, 1, ctypes.byref(n)) == Status.OK
    assert buf.value == b"" and n.value == len(batchput.last_error().encode()) > 0
    assert lib.bp_status_str(999) == b"unknown status"
    assert lib.bp_status_str(Status.STOPPED) == b"stopped"


def test_struct_size_rule():
    files = make_files("structsize", [10])
    lib = batchput.lib
    with batchput.Uploader(SERVER) as up:
        job = up.upload(files)
        job.check()
        handle = job._live()
        # Forgetting struct_size (0), or a size below the first version: refused.
        for size in (0, 8, batchput._Progress.bytes_sent.offset - 1):
            p = batchput._Progress()
            p.struct_size = size
            assert lib.bp_job_poll(handle, ctypes.byref(p)) == Status.INVALID_ARGUMENT
            assert "struct_size" in batchput.last_error(), batchput.last_error()
            assert p.state == 0 and p.files_done == 0, "written although refused"
        # A caller built before bytes_sent existed: its fields, and not one more.
        p = batchput._Progress()
        old = batchput._Progress.bytes_sent.offset
        p.struct_size = old
        p.bytes_sent = 0xABABABABABABABAB
        assert lib.bp_job_poll(handle, ctypes.byref(p)) == Status.OK, batchput.last_error()
        assert p.struct_size == old and p.state == JobState.SUCCEEDED and p.files_done == 1
        assert p.bytes_sent == 0xABABABABABABABAB, "wrote past struct_size"
        r = batchput._FileReport()
        r.struct_size = batchput._FileReport.upload_id.offset - 1
        assert lib.bp_job_file(handle, 0, ctypes.byref(r)) == Status.INVALID_ARGUMENT


def test_new_states_and_statuses_keep_their_numbers():
    assert (FileState.ABORT_FAILED, FileState.UNKNOWN) == (6, 7)
    assert (Status.EMPTY, Status.LOGGER_IN_USE) == (18, 19)
    assert (batchput.Integrity.UNKNOWN, batchput.Integrity.CRC32C) == (0, 3)
    assert batchput.lib.bp_status_str(Status.EMPTY) == b"nothing to read (not an error)"
    expect_error(Status.INVALID_ARGUMENT, ["'level' is 6"], batchput.set_log_level, 6)


def test_list_delete_prefix_and_presign():
    import urllib.error
    import urllib.request

    files = make_files("objects", [10, 2000, 0])
    with batchput.Uploader(SERVER) as up:
        job = up.upload(files)
        assert job.wait(timeout=60)
        job.check()
        listed = list(up.list("python/objects/"))
        assert [o.key for o in listed] == [k for _, k in files], listed
        assert [o.size for o in listed] == [10, 2000, 0], listed
        assert all(o.last_modified and o.last_modified > 1_600_000_000 for o in listed), listed
        assert list(up.list("python/nothing-here/")) == []

        url = up.presign("GET", files[1][1], 60)
        assert "X-Amz-Signature=" in url, url
        with urllib.request.urlopen(url, timeout=30) as r:
            assert r.read() == Path(files[1][0]).read_bytes()
        put = up.presign("PUT", "python/objects/presigned.txt", 60)
        req = urllib.request.Request(put, data=b"from urllib", method="PUT")
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 200
        assert len(list(up.list("python/objects/"))) == 4
        expect_error(Status.INVALID_ARGUMENT, ["1 second to 7 days"], up.presign, "GET", "k", 0)
        expect_error(Status.INVALID_ARGUMENT, ["use GET or PUT"], up.presign, "HEAD", "k", 60)

        assert up.delete_prefix("python/objects/") == 4
        assert list(up.list("python/objects/")) == []
        assert up.delete_prefix("python/objects/") == 0
    assert (Status.DONE, Status.BUFFER_TOO_SMALL) == (20, 21)


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG - 5)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def test_log_bridge_forwards_library_records_to_logging():
    files = make_files("log", [10])
    logger = logging.getLogger("batchput.test")
    logger.setLevel(logging.DEBUG - 5)
    logger.propagate = False
    handler = _Collect()
    logger.addHandler(handler)
    batchput.set_log_level(batchput.LogLevel.DEBUG)
    try:
        with batchput.Uploader(SERVER, secret_key="wrong", retries=1) as up:
            job = up.upload(files)
            assert job.wait(timeout=60)
            assert job.poll().state == JobState.FAILED
        assert batchput.drain_log(logger) >= 1
    finally:
        batchput.set_log_level(batchput.LogLevel.OFF)
    failed = [r for r in handler.records if "job failed" in r.getMessage()]
    assert failed, [r.getMessage() for r in handler.records]
    assert failed[0].levelno == logging.ERROR, failed[0]
    assert "python/log/file-0.bin" in failed[0].getMessage(), failed[0].getMessage()
    # Drained: nothing left.
    assert batchput.drain_log(logger) == 0


def test_download_and_download_prefix():
    files = make_files("download-src", [0, 3000, 6 * MIB + 3])
    keyed = [(path, "python/download/" + key.rsplit("/", 1)[-1]) for path, key in files]
    with batchput.Uploader(SERVER, part_size="5MiB", multipart_threshold="5MiB") as up:
        up.upload(keyed).check()
        # A batch of (destination, key) pairs.
        dest = WORKDIR / "download-batch"
        pairs = [(str(dest / f"f{i}"), key) for i, (_, key) in enumerate(keyed)]
        job = up.download(pairs)
        job.check()
        for (src, _), (dst, _), report in zip(keyed, pairs, job):
            assert Path(dst).read_bytes() == Path(src).read_bytes(), dst
            assert report.state == FileState.COMPLETED, report
            assert report.verified in ("md5", "multipart-etag"), report
        assert list(job)[1].verified == "md5"
        # A prefix below a directory, with a journal.
        below = WORKDIR / "download-prefix"
        job = up.download_prefix("python/download/", below, journal=WORKDIR / "dl.journal")
        job.check()
        for src, key in keyed:
            name = key.rsplit("/", 1)[-1]
            assert (below / name).read_bytes() == Path(src).read_bytes(), name
        assert all(r.verified is not None for r in job), list(job)
        expect_error(
            Status.INVALID_INPUT,
            ["no object under 'python/nothing/'"],
            up.download_prefix,
            "python/nothing/",
            below,
        )


def main():
    tests = [(name, fn) for name, fn in globals().items() if name.startswith("test_") and callable(fn)]
    passed = failed = 0
    for name, fn in tests:
        try:
            fn()
        except Exception:  # noqa: BLE001 - report every failure, run the rest
            failed += 1
            print(f"FAIL {name}")
            traceback.print_exc()
        else:
            passed += 1
            print(f"ok   {name}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
