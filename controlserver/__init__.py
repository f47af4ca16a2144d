"""Control server of printer-fleet: enrollment, assignment of printers to zrok frontends, health."""

__version__ = "0.1.0"
