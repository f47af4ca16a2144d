"""The release builder: real archive names, checksum files, runnable single executables."""

import hashlib
import os
import subprocess
import sys
import tarfile

import pytest

from .conftest import REPO


@pytest.fixture(scope="module")
def release_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("release")
    subprocess.run(
        [sys.executable, "-m", "tests.zrok_standin.release", "--out", str(out), "--version", "2.0.9", "--ziti-version", "1.6.9"],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    return out


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_zrok_archives_match_checksum_file(release_dir):
    directory = release_dir / "openziti/zrok/releases/download/v2.0.9"

    lines = (directory / "checksums.sha256.txt").read_text().splitlines()
    listed = dict(reversed(line.split("  ")) for line in lines)

    assert sorted(listed) == [f"zrok2_2.0.9_linux_{arch}.tar.gz" for arch in ("amd64", "arm64", "armv7")]
    for name, digest in listed.items():
        assert sha256(directory / name) == digest


def test_ziti_archives_have_sidecar_checksums(release_dir):
    directory = release_dir / "openziti/ziti/releases/download/v1.6.9"

    for arch in ("amd64", "arm64", "arm"):
        archive = directory / f"ziti-linux-{arch}-1.6.9.tar.gz"
        sidecar = (directory / f"ziti-linux-{arch}-1.6.9.tar.gz.sha256").read_text().split()
        assert sidecar == [sha256(archive), archive.name]


@pytest.mark.parametrize(
    ("relative", "member", "expected_line"),
    [
        ("openziti/zrok/releases/download/v2.0.9/zrok2_2.0.9_linux_amd64.tar.gz", "zrok2", "v2.0.9 [standin]"),
        ("openziti/ziti/releases/download/v1.6.9/ziti-linux-arm64-1.6.9.tar.gz", "ziti", "v1.6.9"),
    ],
)
def test_archive_holds_one_runnable_executable(release_dir, tmp_path, relative, member, expected_line):
    with tarfile.open(release_dir / relative) as archive:
        members = archive.getmembers()
        archive.extractall(tmp_path, filter="data")

    executable = tmp_path / member
    result = subprocess.run([str(executable), "version"], capture_output=True, text=True, env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)})

    assert [m.name for m in members] == [member]
    assert members[0].mode == 0o755
    assert executable.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    assert result.returncode == 0
    assert expected_line in result.stdout.splitlines()
    assert "stand-in" in result.stdout


def test_rebuild_gives_same_digests(release_dir, tmp_path):
    subprocess.run(
        [sys.executable, "-m", "tests.zrok_standin.release", "--out", str(tmp_path), "--version", "2.0.9", "--ziti-version", "1.6.9"],
        cwd=REPO,
        check=True,
        capture_output=True,
    )

    first = (release_dir / "manifest.json").read_text()
    second = (tmp_path / "manifest.json").read_text()

    assert first == second
