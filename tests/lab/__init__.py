"""Local lab fleet: systemd-nspawn hosts on a bridge, built from a cached Debian image.

`python -m tests.lab up|down|status` drives it from the command line, and the pytest
fixtures in tests/conftest.py bring it up once per test session.
"""
