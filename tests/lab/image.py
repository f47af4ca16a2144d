"""Build and cache the Debian root that every lab host boots from.

Lab hosts have no route out, so everything they need is installed here, with the machine's
network: the base system, the Debian packages the roles install, Moonraker in a venv and the
Klipper stand-in. The image is cached under CACHE_DIR by a hash of its recipe, so a second `up`
reuses it and any change to the recipe builds a new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.lab import topology
from tests.lab.progress import step

SUITE = "bookworm"
MIRROR = os.environ.get("FLEET_LAB_DEBIAN_MIRROR", "http://deb.debian.org/debian")
MOONRAKER_VERSION = "0.11.0"
FILES = Path(__file__).resolve().parent / "files"
IMAGE_FILES = ["klipper_standin.py", "klipper-standin.service", "moonraker.service"]

# Installed by debootstrap: what systemd-nspawn, Ansible over SSH and testinfra need.
BASE_PACKAGES = [
    "systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "iproute2",
]

# Installed afterwards with apt-get inside the root. This is the union of what the roles install
# (they find the packages present and report no change), Moonraker's libsodium, the lab's own DNS
# server and the tools the checks use.
EXTRA_PACKAGES = [
    # Ansible modules: apt needs python3-apt, and the roles unpack release archives.
    "python3-apt", "python3-venv", "tar", "gzip", "unzip", "xz-utils", "acl", "sudo",
    # zrok_frontend role: TLS reverse proxy and the message broker zrok's dynamic proxy uses.
    "caddy", "rabbitmq-server",
    # Control server host.
    "sqlite3",
    # Printers: Moonraker links libsodium at run time.
    "libsodium23",
    # Lab infrastructure and checks.
    "dnsmasq", "ca-certificates", "curl", "procps", "iputils-ping", "less", "rsync",
]

# Services the packages enable on install. The roles or the lab enable them where they belong.
DISABLED_SERVICES = ["caddy", "rabbitmq-server", "dnsmasq"]


# Bump when a change to the build steps below changes what ends up in the image. The package
# lists, the Moonraker version and the files in IMAGE_FILES are part of the hash already.
RECIPE_VERSION = 2


def recipe_hash() -> str:
    """Return a short hash of everything that decides the image content."""
    digest = hashlib.sha256()
    recipe = [RECIPE_VERSION, SUITE, MOONRAKER_VERSION, BASE_PACKAGES, EXTRA_PACKAGES, DISABLED_SERVICES]
    digest.update(repr(recipe).encode())
    for name in IMAGE_FILES:
        digest.update(name.encode())
        digest.update((FILES / name).read_bytes())
    return digest.hexdigest()[:16]


def image_dir() -> Path:
    return topology.CACHE_DIR / "images" / recipe_hash()


def image_root() -> Path:
    return image_dir() / "root"


def ensure_image() -> Path:
    """Return the cached root for the current recipe, building it first when it is missing."""
    root = image_root()
    if (image_dir() / "complete").exists():
        print(f"lab image: using cached {image_dir()}", flush=True)
        return root
    build_image(image_dir())
    return root


def build_image(target: Path) -> None:
    started = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        print(f"lab image: removing the incomplete build in {target}", flush=True)
        shutil.rmtree(target)
    work = target.with_name(target.name + ".building")
    if work.exists():
        # An interrupted build can leave debootstrap's or our /proc, /sys and /dev mounts behind.
        unmount_below(work)
        shutil.rmtree(work)
    root = work / "root"
    print(f"lab image: building Debian {SUITE} into {target} (several minutes)", flush=True)

    with step("debootstrap minbase"):
        run([
            "debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
            SUITE, str(root), MIRROR,
        ])
    with chroot_mounts(root):
        configure_apt(root)
        with step(f"apt-get install {len(EXTRA_PACKAGES)} packages"):
            chroot(root, ["apt-get", "update", "-qq"])
            chroot(root, ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *EXTRA_PACKAGES],
                   env={"DEBIAN_FRONTEND": "noninteractive"})
        with step(f"Moonraker {MOONRAKER_VERSION} venv"):
            install_moonraker(root)
        with step("printer user, Klipper stand-in, services"):
            install_printer_files(root)
        finish_root(root)

    (work / "recipe").write_text(recipe_hash() + "\n")
    work.rename(target)
    (target / "complete").write_text(f"{time.monotonic() - started:.0f}\n")
    remove_other_images(target)
    print(f"lab image: built in {time.monotonic() - started:.0f} s", flush=True)


def remove_other_images(keep: Path) -> None:
    """Delete images built from older recipes: each takes about 450 MB."""
    for path in keep.parent.iterdir():
        if path != keep and path.is_dir():
            print(f"lab image: removing the outdated image {path}", flush=True)
            shutil.rmtree(path)


def configure_apt(root: Path) -> None:
    # Keep services from starting inside the build chroot.
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
    (root / "etc/apt/sources.list").write_text(f"deb {MIRROR} {SUITE} main\n")


def install_moonraker(root: Path) -> None:
    # Download the wheels with the machine's pip (its index and certificate settings apply), then
    # install them into the image's own Python offline. Both are CPython 3.11 on Debian 12.
    with tempfile.TemporaryDirectory(dir=root / "tmp") as wheels:
        run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
             "--only-binary=:all:", "-d", wheels, f"moonraker=={MOONRAKER_VERSION}"])
        inside = "/" + str(Path(wheels).relative_to(root))
        chroot(root, ["python3", "-m", "venv", "/opt/moonraker"])
        chroot(root, ["/opt/moonraker/bin/pip", "install", "--quiet", "--disable-pip-version-check",
                      "--no-index", "--find-links", inside, f"moonraker=={MOONRAKER_VERSION}"])


def install_printer_files(root: Path) -> None:
    chroot(root, ["useradd", "--create-home", "--shell", "/bin/bash", "--uid", "1000", "printer"])
    standin = root / "opt/klipper-standin"
    # Moonraker lists these Klipper source folders; empty ones keep it from warning.
    for sub in ("config", "docs"):
        (standin / sub).mkdir(parents=True)
    shutil.copy(FILES / "klipper_standin.py", standin / "klipper_standin.py")
    for unit in ("klipper-standin.service", "moonraker.service"):
        shutil.copy(FILES / unit, root / "etc/systemd/system" / unit)
    data = root / "home/printer/printer_data"
    for sub in ("config", "logs", "gcodes", "database", "comms", "misc"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    (data / "config/printer.cfg").write_text("# Lab printer: served by the Klipper stand-in.\n")
    # An empty usb.ids keeps Moonraker from downloading it at start.
    (data / "misc/usb.ids").write_text("")
    chroot(root, ["chown", "-R", "printer:printer", "/home/printer"])


def finish_root(root: Path) -> None:
    for service in DISABLED_SERVICES:
        chroot(root, ["systemctl", "disable", f"{service}.service"], check=False)
    # Units that have nothing to do in a container without a route out.
    for unit in ("apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer"):
        chroot(root, ["systemctl", "mask", unit], check=False)
    chroot(root, ["apt-get", "clean"])
    (root / "usr/sbin/policy-rc.d").unlink()
    # The hosts have no route to a mirror: with no sources `apt-get update` succeeds with nothing
    # to fetch, and packages already installed satisfy `state: present`.
    (root / "etc/apt/sources.list").write_text("# lab hosts have no route out\n")
    for lists in (root / "var/lib/apt/lists").glob("*_*"):
        lists.unlink()
    # Do the first-boot updates once here (system users, linker cache, hwdb, journal catalog) and
    # mark /etc and /var as up to date, so units with ConditionNeedsUpdate= skip at every boot.
    # Ten hosts running them at once under load made systemd-sysusers fail now and then.
    chroot(root, ["systemd-sysusers"])
    chroot(root, ["ldconfig"])
    chroot(root, ["systemd-hwdb", "update"], check=False)
    chroot(root, ["journalctl", "--update-catalog"], check=False)
    for marker in ("etc/.updated", "var/.updated"):
        (root / marker).touch()
    # Each host gets its own machine id, hostname and resolv.conf in its overlay.
    (root / "etc/machine-id").write_text("")
    (root / "etc/resolv.conf").write_text("")


def unmount_below(path: Path) -> None:
    """Unmount every mount point at or below `path`, deepest first."""
    prefix = str(path.resolve())
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount_point in sorted((m for m in mounts if m == prefix or m.startswith(prefix + "/")), reverse=True):
        subprocess.run(["umount", "-l", mount_point], check=False)


@contextlib.contextmanager
def chroot_mounts(root: Path):
    mounted = []
    try:
        for kind, target in (("proc", "proc"), ("sysfs", "sys"), ("devtmpfs", "dev")):
            path = root / target
            run(["mount", "-t", kind, kind, str(path)])
            mounted.append(path)
        yield
    finally:
        for path in reversed(mounted):
            subprocess.run(["umount", "-l", str(path)], check=False)


def chroot(root: Path, command: list[str], env: dict[str, str] | None = None, check: bool = True) -> None:
    full_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", **(env or {})}
    run(["chroot", str(root), *command], env=full_env, check=check)


def run(command: list[str], env: dict[str, str] | None = None, check: bool = True) -> None:
    result = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if check and result.returncode != 0:
        tail = "\n".join(result.stdout.splitlines()[-30:])
        raise RuntimeError(f"command failed with exit status {result.returncode}: {' '.join(command)}\n{tail}")
