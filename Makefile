# The two commands a new operator needs on a fresh Debian 12 machine (as root):
#   make lab    build and start the local lab fleet, configure it with the playbooks, print its state
#   make test   run the whole test suite, lab included
# `make lab-down` removes the lab and leaves nothing running.

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

# Debian packages on the machine that runs the lab: debootstrap builds the hosts' image,
# systemd-container has systemd-nspawn, iproute2 makes the bridge and namespaces, openssh-client
# carries Ansible and testinfra to the hosts, python3-venv makes $(VENV), caddy runs the rendered
# Caddyfile in tests/roles. Moonraker's libsodium is baked into the lab image, not installed here.
# prometheus provides promtool, which checks and unit-tests monitoring/alerts.yml (Debian packages
# promtool only with the server, whose service the package enables). chromium and chromium-driver
# run the dashboard's browser tests (headless, through selenium and /usr/bin/chromedriver).
APT_PACKAGES := debootstrap systemd-container iproute2 openssh-client python3-venv \
	rsync curl ca-certificates openssl caddy prometheus chromium chromium-driver

export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: setup system-packages test unit lab lab-down lab-status lint

setup: $(INSTALLED)

system-packages:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(INSTALLED): requirements.txt requirements-nodeps.txt | system-packages
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	# zrok2's own dependency (openziti) builds a C SDK from a download; only its REST client is needed.
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	touch $@

# system-packages: the browser tests of the dashboard need chromium and chromium-driver.
unit: setup system-packages
	$(PY) -m pytest -m "not lab" tests

# Unit tests and the lab tests in one session: the lab fixture boots the lab once and removes it
# at the end (a lab left by `make lab` is reused and kept).
test: setup system-packages
	$(PY) -m pytest --durations=20 tests

lint: setup
	$(VENV)/bin/ansible-lint --profile production playbooks roles

lab: setup system-packages
	$(PY) -m tests.lab up

lab-down: setup
	$(PY) -m tests.lab down

lab-status: setup
	$(PY) -m tests.lab status
