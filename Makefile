# The two commands a new operator needs on a fresh Debian 12 machine (as root):
#   make lab    build and start the local lab fleet, configure it with the playbooks, print its state
#   make test   run the whole test suite, lab included
# `make lab-down` removes the lab and leaves nothing running.

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

# Debian packages: the lab (debootstrap, systemd-nspawn, iproute2, ssh), Moonraker's libsodium,
# PostgreSQL client tools for the replica tests, and the venv module for Debian's own Python.
APT_PACKAGES := debootstrap systemd-container iproute2 openssh-client libsodium23 \
	python3-venv rsync curl ca-certificates

export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: setup system-packages test unit lab lab-down lint

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

unit: setup
	$(PY) -m pytest -m "not lab" tests

test: setup system-packages
	$(PY) -m pytest tests

lint: setup
	$(VENV)/bin/ansible-lint --profile production playbooks roles

lab: setup system-packages
	$(PY) -m tests.lab up

lab-down:
	$(PY) -m tests.lab down
