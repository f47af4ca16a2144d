"""Start and stop the lab hosts: bridge, network namespaces, overlays and systemd-nspawn.

Each host boots systemd from an overlayfs over the shared image root, in its own network
namespace, with a veth into the bridge. The hosts have no default route, so they reach only the
lab subnet. Everything `up` creates is recorded under STATE_DIR so that `down` removes it, even
after a crash and from another checkout.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.lab import topology
from tests.lab.topology import Host

HOSTS_DIR = topology.STATE_DIR / "hosts"
SSH_DIR = topology.STATE_DIR / "ssh"
SSH_KEY = SSH_DIR / "id_ed25519"
CA_NAME = "printer-fleet-lab-ca.crt"
FILES = Path(__file__).resolve().parent / "files"
PRINTER_UID = 1000  # the `printer` user the image creates for Moonraker and the Klipper stand-in
MASKED_UNITS = ["systemd-remount-fs.service"]
BOOT_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def host_dir(host: Host) -> Path:
    return HOSTS_DIR / host.name


def merged_dir(host: Host) -> Path:
    return host_dir(host) / "merged"


def ensure_ssh_key() -> Path:
    SSH_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not SSH_KEY.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "printer-fleet-lab",
                        "-f", str(SSH_KEY)], check=True)
    return SSH_KEY


# Network

def create_bridge() -> None:
    if ip("link", "show", topology.BRIDGE, check=False).returncode != 0:
        ip("link", "add", topology.BRIDGE, "type", "bridge")
    ip("addr", "replace", f"{topology.BRIDGE_ADDRESS}/{topology.PREFIX_LENGTH}", "dev", topology.BRIDGE)
    ip("link", "set", topology.BRIDGE, "up")


def create_host_network(host: Host) -> None:
    if not Path(f"/run/netns/{host.name}").exists():
        ip("netns", "add", host.name)
    if ip("link", "show", host.veth_host, check=False).returncode != 0:
        ip("link", "add", host.veth_host, "type", "veth", "peer", "name", "eth0", "netns", host.name)
    ip("link", "set", host.veth_host, "master", topology.BRIDGE)
    ip("link", "set", host.veth_host, "up")
    ip("-n", host.name, "addr", "replace", f"{host.address}/{topology.PREFIX_LENGTH}", "dev", "eth0")
    ip("-n", host.name, "link", "set", "eth0", "up")
    ip("-n", host.name, "link", "set", "lo", "up")


# Root file systems

def mount_overlay(host: Host, lower: Path) -> None:
    base = host_dir(host)
    for sub in ("upper", "work", "merged"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    if os.path.ismount(base / "merged"):
        return
    subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o",
         f"lowerdir={lower},upperdir={base / 'upper'},workdir={base / 'work'}", str(base / "merged")],
        check=True)


def write_host_files(host: Host, public_key: str, ca_cert: Path, dnsmasq_conf: str) -> None:
    """Write what differs between hosts into the overlay before boot."""
    root = merged_dir(host)
    (root / "etc/hostname").write_text(f"{host.name}\n")
    (root / "etc/hosts").write_text(
        f"127.0.0.1 localhost\n127.0.1.1 {host.name}.{topology.DNS_DOMAIN} {host.name}\n"
        f"::1 localhost ip6-localhost ip6-loopback\n")
    (root / "etc/machine-id").write_text(os.urandom(16).hex() + "\n")
    (root / "etc/resolv.conf").write_text(
        f"nameserver {topology.DNS_SERVER}\nsearch {topology.DNS_DOMAIN}\n")

    ssh = root / "root/.ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    (ssh / "authorized_keys").write_text(public_key)
    (ssh / "authorized_keys").chmod(0o600)

    trust_ca(root, ca_cert)

    # systemd-nspawn mounts the root file system; remounting it per /etc/fstab has nothing to do,
    # and under load it failed now and then on a booting host.
    for unit in MASKED_UNITS:
        mask = root / "etc/systemd/system" / unit
        if not mask.is_symlink():
            mask.symlink_to("/dev/null")

    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    enabled = []
    if host.kind == "printer":
        config = root / "home/printer/printer_data/config/moonraker.conf"
        shutil.copy(FILES / "moonraker.conf", config)
        os.chown(config, PRINTER_UID, PRINTER_UID)
        enabled = ["klipper-standin.service", "moonraker.service"]
    if host.kind == "control":
        (root / "etc/dnsmasq.d/fleet-lab.conf").write_text(dnsmasq_conf)
        enabled = ["dnsmasq.service"]
    for unit in enabled:
        link = wants / unit
        if not link.is_symlink():
            source = "/etc/systemd/system" if (root / "etc/systemd/system" / unit).exists() else "/lib/systemd/system"
            link.symlink_to(f"{source}/{unit}")


def trust_ca(root: Path, ca_cert: Path) -> None:
    """Add the lab CA to the host's system trust store, with the files update-ca-certificates makes.

    Writing them directly takes milliseconds where running update-ca-certificates in each root
    takes seconds; a later update-ca-certificates on the host rebuilds the same files.
    """
    pem = ca_cert.read_text()
    local = root / "usr/local/share/ca-certificates" / CA_NAME
    local.write_text(pem)
    certs = root / "etc/ssl/certs"
    link = certs / CA_NAME.replace(".crt", ".pem")
    if not link.is_symlink():
        link.symlink_to(f"/usr/local/share/ca-certificates/{CA_NAME}")
    subject_hash = subprocess.run(["openssl", "x509", "-subject_hash", "-noout", "-in", str(ca_cert)],
                                  capture_output=True, text=True, check=True).stdout.strip()
    hash_link = certs / f"{subject_hash}.0"
    if not hash_link.is_symlink():
        hash_link.symlink_to(link.name)
    bundle = certs / "ca-certificates.crt"
    if pem not in bundle.read_text():
        bundle.write_text(bundle.read_text() + pem)


def dnsmasq_config() -> str:
    lines = [
        "# Lab DNS: wildcard names for the share domains, one name per lab host.",
        f"listen-address={topology.DNS_SERVER}",
        "bind-interfaces",
        "no-resolv",
        "no-hosts",
        f"local=/{topology.DNS_DOMAIN}/",
    ]
    for frontend in topology.FRONTENDS:
        # address=/domain/ also answers every name below the domain.
        lines.append(f"address=/{frontend.share_domain}/{frontend.address}")
    lines.append(f"address=/{topology.CONTROL_SERVER_NAME}/{topology.CONTROL.address}")
    for host in topology.HOSTS:
        lines.append(f"host-record={host.name}.{topology.DNS_DOMAIN},{host.address}")
    return "\n".join(lines) + "\n"


# Containers

def pid_file(host: Host) -> Path:
    return host_dir(host) / "nspawn.pid"


def running_pid(host: Host) -> int | None:
    """Return the nspawn PID recorded for `host` if that process still runs systemd-nspawn."""
    try:
        pid = int(pid_file(host).read_text())
        # Read the executable, not the command line. Once, /proc/PID/cmdline of a booting nspawn
        # lacked "systemd-nspawn", so the host was taken for exited and a second nspawn stopped
        # with "Directory tree ... is currently busy". An exited process, a zombie too, has no
        # executable link.
        executable = os.readlink(f"/proc/{pid}/exe")
    except (FileNotFoundError, ValueError):
        return None
    return pid if Path(executable).name == "systemd-nspawn" else None


def start_container(host: Host) -> int:
    pid = running_pid(host)
    if pid:
        return pid
    log = open(host_dir(host) / "console.log", "ab")
    process = subprocess.Popen(
        ["systemd-nspawn", "-D", str(merged_dir(host)), "-M", host.name,
         "--register=no", "--keep-unit", f"--network-namespace-path=/run/netns/{host.name}",
         "--resolv-conf=off", "--timezone=off", "--link-journal=no", "--console=passive", "-b"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    pid_file(host).write_text(f"{process.pid}\n")
    return process.pid


def wait_for_ssh(host: Host, deadline: float) -> None:
    """Wait until sshd on `host` sends its banner."""
    last_error = "no attempt"
    restarted = False
    while time.monotonic() < deadline:
        if running_pid(host) is None:
            if restarted:
                raise RuntimeError(f"{host.name}: systemd-nspawn exited during boot; see {host_dir(host) / 'console.log'}")
            # Seen once right after an earlier container was killed: nspawn exited at once with
            # nothing in the console log, and the same command booted the host on the next try.
            print(f"  {host.name}: systemd-nspawn exited during boot; starting it once more", flush=True)
            restarted = True
            start_container(host)
            continue
        try:
            with socket.create_connection((host.address, 22), timeout=2) as conn:
                conn.settimeout(5)
                if conn.recv(64).startswith(b"SSH-"):
                    return
        except OSError as error:
            last_error = str(error)
        time.sleep(0.5)
    raise TimeoutError(f"{host.name}: sshd did not answer on {host.address}:22 ({last_error}); "
                       f"see {host_dir(host) / 'console.log'}")


# Units that systemd could not start because their cgroup vanished while the container booted
# ("Failed at step CGROUP spawning ...", exit status 219, EXIT_CGROUP). Seen once on a loaded
# machine for systemd-user-sessions in one of ten hosts; starting the unit again works. Any other
# failure is left for the checks.
RESTART_CGROUP_FAILURES = r"""
systemctl is-system-running --wait >/dev/null 2>&1
for unit in $(systemctl --failed --no-legend --plain | awk '{print $1}'); do
    if [ "$(systemctl show -p ExecMainStatus --value "$unit")" = 219 ]; then
        systemctl reset-failed "$unit" && systemctl start "$unit" && echo "$unit"
    fi
done
"""


def restart_cgroup_failures(host: Host) -> None:
    """Start once more the units that failed at boot only because their cgroup was missing."""
    result = subprocess.run(
        ["ssh", "-i", str(SSH_KEY), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", f"root@{host.address}", RESTART_CGROUP_FAILURES],
        capture_output=True, text=True, timeout=300)
    for unit in result.stdout.split():
        print(f"  {host.name}: {unit} failed at boot without its cgroup; started it once more", flush=True)


# Teardown

def stop_container(host: Host) -> None:
    pid = running_pid(host)
    if pid is None:
        return
    # SIGTERM makes nspawn ask the container's systemd for an orderly poweroff.
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline and running_pid(host) == pid:
        time.sleep(0.3)
    if running_pid(host) == pid:
        print(f"  {host.name}: no poweroff after {STOP_TIMEOUT:.0f} s, killing systemd-nspawn {pid}", flush=True)
        os.kill(pid, signal.SIGKILL)
        while running_pid(host) == pid:
            time.sleep(0.1)


def remove_host(host: Host) -> None:
    stop_container(host)
    netns = Path(f"/run/netns/{host.name}")
    if netns.exists():
        # Processes the lab left in the namespace outside the container (none expected).
        pids = ip("netns", "pids", host.name, check=False).stdout.split()
        for pid in pids:
            os.kill(int(pid), signal.SIGKILL)
    merged = merged_dir(host)
    if os.path.ismount(merged):
        if subprocess.run(["umount", str(merged)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(merged)], check=True)
    if ip("link", "show", host.veth_host, check=False).returncode == 0:
        ip("link", "del", host.veth_host)
    if netns.exists():
        ip("netns", "del", host.name)
    if host_dir(host).exists():
        shutil.rmtree(host_dir(host))


def remove_bridge() -> None:
    if ip("link", "show", topology.BRIDGE, check=False).returncode == 0:
        ip("link", "del", topology.BRIDGE)
