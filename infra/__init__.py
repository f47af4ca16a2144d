"""Pulumi program of printer-fleet: regional zrok frontends, the control-server host, the inventory."""
