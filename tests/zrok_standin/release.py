"""Pack the zrok and OpenZiti stand-ins as release archives with the real names and layout.

    python -m tests.zrok_standin.release --out DIR [--version 2.0.8] [--ziti-version 1.6.20]

writes, below DIR, the paths that the real releases have below
https://github.com/ (so a role's download URL differs only in its base):

    openziti/zrok/releases/download/v<version>/zrok2_<version>_linux_<arch>.tar.gz   (amd64, arm64, armv7)
    openziti/zrok/releases/download/v<version>/checksums.sha256.txt
    openziti/ziti/releases/download/v<ziti>/ziti-linux-<arch>-<ziti>.tar.gz     (amd64, arm64, arm)
    openziti/ziti/releases/download/v<ziti>/ziti-linux-<arch>-<ziti>.tar.gz.sha256
    manifest.json   (versions, archive paths and sha256 digests, for the lab)

Each zrok archive contains one executable, `zrok2`, and each OpenZiti archive
contains `ziti`. Both are Python zipapps (`#!/usr/bin/env python3`) of this
package, so they run on any architecture with the standard library alone
(tested with Python 3.11, the version of Debian 12). The
archives are byte-for-byte reproducible: zip and tar entries carry a fixed
timestamp, so rebuilding the same sources gives the same digests.

NOTE: OpenZiti publishes no checksum file beside its archives (an upstream
issue requests `.sha256` sidecars); the `.sha256` sidecar here is
for the lab only. A role should pin OpenZiti's digest as a variable.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
import zipfile

from . import STANDIN_NOTICE, ZITI_VERSION, ZROK_VERSION

# The architectures of the real release archives: zrok2 names 32-bit ARM `armv7`, OpenZiti `arm`.
ZROK_ARCHITECTURES = ("amd64", "arm64", "armv7")
ZITI_ARCHITECTURES = ("amd64", "arm64", "arm")
_FIXED_ZIP_TIME = (2020, 1, 1, 0, 0, 0)
_FIXED_MTIME = 1577836800  # 2020-01-01T00:00:00Z
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_EXCLUDED = {"release.py"}

_ZIPAPP_MAIN = '''"""Start the printer-fleet lab stand-in; see zrok_standin/__init__.py."""
import sys

from zrok_standin.__main__ import main

sys.exit(main())
'''


def build_zipapp(zrok_version, ziti_version):
    """Return the bytes of an executable zipapp that runs the stand-in named by argv[0]."""
    buffer = io.BytesIO()
    buffer.write(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        _add(archive, "__main__.py", _ZIPAPP_MAIN.encode())
        release = f'"""Versions packed by the release builder."""\nZROK_VERSION = "{zrok_version}"\nZITI_VERSION = "{ziti_version}"\n'
        _add(archive, "zrok_standin/_release.py", release.encode())
        for name in sorted(os.listdir(_PACKAGE_DIR)):
            if not name.endswith(".py") or name in _EXCLUDED or name == "_release.py":
                continue
            with open(os.path.join(_PACKAGE_DIR, name), "rb") as handle:
                _add(archive, f"zrok_standin/{name}", handle.read())
    return buffer.getvalue()


def _add(archive, name, data):
    info = zipfile.ZipInfo(name, date_time=_FIXED_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def build_tarball(path, member_name, executable):
    """Write a reproducible .tar.gz at `path` holding one executable called `member_name`."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(member_name)
        info.size = len(executable)
        info.mode = 0o755
        info.mtime = _FIXED_MTIME
        info.uname = info.gname = "root"
        tar.addfile(info, io.BytesIO(executable))
    with open(path, "wb") as handle:
        with gzip.GzipFile(filename="", mode="wb", fileobj=handle, mtime=0) as compressed:
            compressed.write(raw.getvalue())


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build(out_dir, zrok_version=ZROK_VERSION, ziti_version=ZITI_VERSION):
    """Build every archive and checksum file below `out_dir`; return the manifest."""
    executable = build_zipapp(zrok_version, ziti_version)
    zrok_dir = os.path.join(out_dir, "openziti", "zrok", "releases", "download", f"v{zrok_version}")
    ziti_dir = os.path.join(out_dir, "openziti", "ziti", "releases", "download", f"v{ziti_version}")
    os.makedirs(zrok_dir, exist_ok=True)
    os.makedirs(ziti_dir, exist_ok=True)
    manifest = {
        "notice": STANDIN_NOTICE,
        "zrok": {"version": zrok_version, "path": os.path.relpath(zrok_dir, out_dir), "archives": {}},
        "ziti": {"version": ziti_version, "path": os.path.relpath(ziti_dir, out_dir), "archives": {}},
    }

    checksum_lines = []
    for arch in ZROK_ARCHITECTURES:
        name = f"zrok2_{zrok_version}_linux_{arch}.tar.gz"
        path = os.path.join(zrok_dir, name)
        build_tarball(path, "zrok2", executable)
        digest = sha256_file(path)
        checksum_lines.append(f"{digest}  {name}\n")
        manifest["zrok"]["archives"][arch] = {"name": name, "sha256": digest}
    with open(os.path.join(zrok_dir, "checksums.sha256.txt"), "w", encoding="utf-8") as handle:
        handle.writelines(checksum_lines)

    for arch in ZITI_ARCHITECTURES:
        name = f"ziti-linux-{arch}-{ziti_version}.tar.gz"
        path = os.path.join(ziti_dir, name)
        build_tarball(path, "ziti", executable)
        digest = sha256_file(path)
        with open(f"{path}.sha256", "w", encoding="utf-8") as handle:
            handle.write(f"{digest}  {name}\n")
        manifest["ziti"]["archives"][arch] = {"name": name, "sha256": digest}

    with open(os.path.join(out_dir, "manifest.json"), "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2)
        handle.write("\n")
    return manifest


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m tests.zrok_standin.release",
        description=f"Pack the {STANDIN_NOTICE} (and its OpenZiti stand-in) as release archives.",
    )
    parser.add_argument("--out", required=True, help="output directory (created if missing)")
    parser.add_argument("--version", default=ZROK_VERSION, help=f"zrok version to pretend to be (default {ZROK_VERSION})")
    parser.add_argument("--ziti-version", default=ZITI_VERSION, help=f"OpenZiti version to pretend to be (default {ZITI_VERSION})")
    args = parser.parse_args(argv)
    manifest = build(args.out, args.version.lstrip("v"), args.ziti_version.lstrip("v"))
    for product in ("zrok", "ziti"):
        for arch, entry in manifest[product]["archives"].items():
            print(f"{manifest[product]['path']}/{entry['name']}  sha256:{entry['sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
