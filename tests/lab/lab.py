"""Bring the lab up, tear it down and report its state."""

from __future__ import annotations

import concurrent.futures
import shutil
import time

from tests.lab import hosts, image, inventory, pki, topology
from tests.lab.progress import step

PKI_DIR = topology.STATE_DIR / "pki"


def up_hosts() -> dict:
    """Build or reuse the image and boot every lab host; return timings in seconds."""
    timings = {}
    started = time.monotonic()
    root = image.ensure_image()
    timings["image"] = time.monotonic() - started

    started = time.monotonic()
    print(f"lab: starting {len(topology.HOSTS)} hosts on {topology.BRIDGE} ({topology.SUBNET})", flush=True)
    ssh_key = hosts.ensure_ssh_key()
    public_key = ssh_key.with_suffix(".pub").read_text()
    if not (PKI_DIR / "ca.crt").exists():
        pki.make_pki(PKI_DIR)
    pki_paths = pki_files()
    inventory.write_secrets()

    # Hosts still running from an earlier `up` keep their state; the others start afresh.
    stopped = [host for host in topology.HOSTS if not hosts.running_pid(host)]
    with step("bridge, namespaces, overlays"):
        hosts.create_bridge()
        dnsmasq = hosts.dnsmasq_config()
        for host in stopped:
            hosts.create_host_network(host)
            hosts.mount_overlay(host, root)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda h: hosts.write_host_files(h, public_key, pki_paths["ca"], dnsmasq), stopped))
    with step("boot systemd and wait for sshd"):
        for host in stopped:
            hosts.start_container(host)
        deadline = time.monotonic() + hosts.BOOT_TIMEOUT
        with concurrent.futures.ThreadPoolExecutor(len(topology.HOSTS)) as pool:
            list(pool.map(lambda h: hosts.wait_for_ssh(h, deadline), topology.HOSTS))
            list(pool.map(hosts.restart_cgroup_failures, stopped))
    inventory.write_inventory(ssh_key, PKI_DIR)
    timings["hosts"] = time.monotonic() - started
    print(f"lab: {len(topology.HOSTS)} hosts answer on SSH after {timings['hosts']:.0f} s; "
          f"inventory {inventory.INVENTORY_FILE}", flush=True)
    return timings


def pki_files() -> dict:
    paths = {"ca": PKI_DIR / "ca.crt"}
    for name in [h.share_domain for h in topology.FRONTENDS] + [topology.CONTROL_SERVER_NAME]:
        paths[f"{name}_cert"] = PKI_DIR / f"{name}.crt"
        paths[f"{name}_key"] = PKI_DIR / f"{name}.key"
    return paths


def down() -> None:
    """Stop every lab host and remove namespaces, veths, overlays, the bridge and lab state."""
    print("lab: stopping hosts", flush=True)
    with concurrent.futures.ThreadPoolExecutor(len(topology.HOSTS)) as pool:
        list(pool.map(hosts.stop_container, topology.HOSTS))
    for host in topology.HOSTS:
        hosts.remove_host(host)
    hosts.remove_bridge()
    # Per-lab state: secrets, keys and certificates are made anew by the next `up`.
    for path in (topology.STATE_DIR, topology.BUILD_DIR):
        if path.exists():
            shutil.rmtree(path)
    print("lab: removed; nothing of it is running", flush=True)


def status() -> int:
    """Print one line per host; return 0 when every host runs."""
    running = 0
    print(f"{'host':<12} {'address':<14} {'kind':<9} state")
    for host in topology.HOSTS:
        pid = hosts.running_pid(host)
        state = f"running (systemd-nspawn pid {pid})" if pid else "stopped"
        running += bool(pid)
        print(f"{host.name:<12} {host.address:<14} {host.kind:<9} {state}")
    print(f"{running} of {len(topology.HOSTS)} hosts running")
    return 0 if running == len(topology.HOSTS) else 1
