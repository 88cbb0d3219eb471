"""A throw-away VM with Debian's own kernel, for code that needs kernel features this host lacks (IPVS).

Build once, cached under `~/.cache/minik8s/ipvs-vm/<kernel>/`:
  - `linux-image-<abi>-amd64` (resolved through `apt-cache depends linux-image-amd64`), fetched with
    `apt-get download` and unpacked with `dpkg-deb -x` — nothing is installed on the host;
  - the module closure of ip_vs (+ rr/wrr schedulers, dummy), ordered by each .ko's `depends=`;
  - busybox-static as /bin, Debian's python3.11 (its debs unpacked the same way), the stdlib precompiled;
  - `/init`: mounts, insmods, brings lo up, runs `/test/run.py`, prints `VM-EXIT <code>`, powers off.
Each run appends a small gzip cpio overlay (the test script and the Python packages it needs, e.g.
pyroute2 and kubeproxy) to the cached base and boots it under qemu with software emulation and no
network device at all (`-nic none`): the VM can reach nothing outside itself.

    python3 deploy/qemu/ipvs_vm.py build         # prints the cache dir
    python3 deploy/qemu/ipvs_vm.py run script.py # boots and runs a script, prints the console

`Unavailable` is raised, with the reason, when qemu or the packages cannot be obtained.
"""
from __future__ import annotations

import gzip
import io
import logging
import lzma
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

logger = logging.getLogger(__name__)

CACHE = Path(os.environ.get("MINIK8S_VM_CACHE", Path.home() / ".cache/minik8s/ipvs-vm"))
BUILD_VERSION = "2"
MODULES = ["crc32c_generic", "nf_defrag_ipv4", "nf_defrag_ipv6", "libcrc32c", "nf_conntrack",
           "ip_vs", "ip_vs_rr", "ip_vs_wrr", "dummy"]
PYTHON_DEBS = ["python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libc6", "zlib1g",
               "libexpat1", "libffi8", "libbz2-1.0", "liblzma5", "libssl3", "libsqlite3-0"]
QEMU = "qemu-system-x86_64"

INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mount -t tmpfs tmp /tmp
for m in $(cat /modules.order); do insmod /modules/$m.ko || echo "insmod $m failed"; done
ip link set lo up
cd /test && PYTHONPATH=/test/lib PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3.11 /test/run.py
echo "VM-EXIT $?"
poweroff -f
"""


class Unavailable(RuntimeError):
    """qemu or the Debian packages cannot be had here; callers skip with this message."""


def _run(*cmd: str, cwd: Path | None = None) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=300)
    except FileNotFoundError as e:
        raise Unavailable(f"{cmd[0]} not found") from e
    if p.returncode != 0:
        raise Unavailable(f"{' '.join(cmd)} failed: {p.stderr.strip()[-500:]}")
    return p.stdout


def kernel_package() -> str:
    out = _run("apt-cache", "depends", "linux-image-amd64")
    found = re.search(r"Depends: (linux-image-\S+-amd64)", out)
    if not found:
        raise Unavailable("apt-cache knows no linux-image-amd64 (run apt-get update)")
    return found.group(1)


# -- cpio (newc), written here: no cpio binary needed ------------------------------------------------

def _cpio_entry(out: io.BufferedIOBase, name: str, mode: int, data: bytes, ino: int, mtime: int) -> None:
    name_b = name.encode() + b"\0"
    header = "070701" + "".join(f"{v:08x}" for v in (ino, mode, 0, 0, 1, mtime, len(data), 0, 0, 0, 0,
                                                     len(name_b), 0))
    out.write(header.encode() + name_b)
    out.write(b"\0" * (-(110 + len(name_b)) % 4))
    out.write(data)
    out.write(b"\0" * (-len(data) % 4))


def write_cpio(root: Path, out: io.BufferedIOBase) -> None:
    ino = 1
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames) + sorted(filenames):
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = os.lstat(path)
            if path.is_symlink():
                data = os.readlink(path).encode()
            elif path.is_dir():
                data = b""
            else:
                data = path.read_bytes()
            _cpio_entry(out, rel, st.st_mode, data, ino, int(st.st_mtime))
            ino += 1
    _cpio_entry(out, "TRAILER!!!", 0, b"", 0, 0)


# -- build -------------------------------------------------------------------------------------------

def _module_closure(kroot: Path) -> list[Path]:
    paths: dict[str, Path] = {}
    for p in kroot.rglob("*.ko*"):
        paths[re.sub(r"\.ko(\.xz|\.zst|\.gz)?$", "", p.name).replace("-", "_")] = p
    ordered: list[str] = []

    def visit(name: str) -> None:
        if name in ordered:
            return
        if name not in paths:
            raise Unavailable(f"kernel module {name} not in the package")
        data = _module_bytes(paths[name])
        deps = re.search(rb"depends=([^\0]*)", data)
        for dep in filter(None, (deps.group(1).decode().split(",") if deps else [])):
            visit(dep.replace("-", "_"))
        ordered.append(name)

    for m in MODULES:
        visit(m)
    return [paths[n] for n in ordered]


def _module_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return lzma.decompress(data) if path.name.endswith(".xz") else data


def build(cache: Path = CACHE) -> Path:
    """Return the directory holding `vmlinuz` and `base.cpio.gz`, building it on first use."""
    if not shutil.which(QEMU):
        raise Unavailable(f"{QEMU} is not installed (apt-get install --no-install-recommends qemu-system-x86)")
    if not Path("/bin/busybox").exists():
        raise Unavailable("/bin/busybox (busybox-static) is missing")
    pkg = kernel_package()
    target = cache / f"{pkg}-v{BUILD_VERSION}"
    if (target / "base.cpio.gz").exists():
        return target
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ipvs-vm-") as tmp:
        tmp_path = Path(tmp)
        debs = tmp_path / "debs"
        debs.mkdir()
        _run("apt-get", "download", pkg, *PYTHON_DEBS, cwd=debs)
        kernel, root = tmp_path / "kernel", tmp_path / "root"
        for deb in debs.glob("*.deb"):
            _run("dpkg-deb", "-x", str(deb), str(kernel if deb.name.startswith("linux-image") else root))
        vmlinuz = next((kernel / "boot").glob("vmlinuz-*"))
        kroot = next((kernel / "lib/modules").iterdir()) / "kernel"
        modules = root / "modules"
        modules.mkdir()
        names = []
        for ko in _module_closure(kroot):
            name = re.sub(r"\.ko(\.xz)?$", "", ko.name)
            (modules / f"{name}.ko").write_bytes(_module_bytes(ko))
            names.append(name)
        (root / "modules.order").write_text("\n".join(names) + "\n")
        for d in ("bin", "proc", "sys", "dev", "tmp", "test"):
            (root / d).mkdir(exist_ok=True)
        shutil.copy2("/bin/busybox", root / "bin/busybox")
        (root / "init").write_text(INIT)
        (root / "init").chmod(0o755)
        # The loader path the python binary asks for, in case usrmerge symlinks are absent in the debs.
        for link, dest in (("lib64", "usr/lib64"), ("lib", "usr/lib")):
            if not (root / link).exists() and (root / dest).exists():
                (root / link).symlink_to(dest)
        stdlib = root / "usr/lib/python3.11"
        _run(sys.executable, "-m", "compileall", "-q", "-j0", "-x", r"(test|idlelib|lib2to3|tkinter)/", str(stdlib))
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(vmlinuz, target / "vmlinuz")
        with gzip.open(target / "base.cpio.gz.tmp", "wb", compresslevel=1) as out:
            write_cpio(root, out)
        (target / "base.cpio.gz.tmp").rename(target / "base.cpio.gz")
    logger.info("built the VM image in %.1fs: %s", time.monotonic() - started, target)
    return target


# -- run ---------------------------------------------------------------------------------------------

def overlay(script: str, packages: dict[str, Path]) -> bytes:
    """gzip cpio with /test/run.py and /test/lib/<name> copies of each package directory (precompiled)."""
    with tempfile.TemporaryDirectory(prefix="ipvs-vm-overlay-") as tmp:
        root = Path(tmp)
        lib = root / "test/lib"
        lib.mkdir(parents=True)
        (root / "test/run.py").write_text(script)
        for name, src in packages.items():
            shutil.copytree(src, lib / name, ignore=shutil.ignore_patterns("__pycache__", "tests"))
        _run(sys.executable, "-m", "compileall", "-q", "-j0", str(lib))
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=1) as out:
            write_cpio(root, out)
        return buf.getvalue()


def run(script: str, packages: dict[str, Path], *, timeout: float = 120, cache: Path = CACHE) -> tuple[int, str]:
    """Boot the VM, run `script` as /test/run.py; returns (its exit code, the console output)."""
    image = build(cache)
    with tempfile.TemporaryDirectory(prefix="ipvs-vm-run-") as tmp:
        initrd = Path(tmp) / "initrd.gz"
        initrd.write_bytes((image / "base.cpio.gz").read_bytes() + overlay(script, packages))
        cmd = [QEMU, "-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", "512", "-no-reboot", "-nic", "none",
               "-monitor", "none", "-serial", "stdio", "-display", "none", "-kernel", str(image / "vmlinuz"),
               "-initrd", str(initrd), "-append", "console=ttyS0 quiet panic=-1"]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            return 124, out
    found = re.search(r"VM-EXIT (\d+)", p.stdout)
    return (int(found.group(1)) if found else 125), p.stdout


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    if sys.argv[1:2] == ["build"]:
        print(build())
    elif sys.argv[1:2] == ["run"]:
        code, output = run(Path(sys.argv[2]).read_text(), {})
        print(output)
        sys.exit(code)
    else:
        sys.exit(__doc__)
