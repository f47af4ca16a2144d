"""Lab stand-in for zrok v2 (`zrok2`) and OpenZiti (`ziti`). Not zrok, not OpenZiti.

The printer-fleet lab has no route to the internet, so it cannot download
the real zrok and OpenZiti releases. This package imitates the parts of them
that the roles, the fleet agent and the control server use. These are the
`zrok2` CLI verbs and their output, the zrok controller's REST API under
/api/v2, and the dynamic proxy frontend that routes by `Host`. An OpenZiti
router stand-in relays each public request over a connection that the
sharing host opened. Everything runs with the Python standard library only,
because lab hosts have no pip.

Nothing in the product imports this package. The release builder
(`python -m tests.zrok_standin.release`) packs it into archives with the
real release names, so the roles install it like the real software.
See docs/zrok-standin.md.
"""

# The release that the stand-in pretends to be unless the builder packs another one.
ZROK_VERSION = "2.0.8"
ZITI_VERSION = "1.6.20"

try:
    # The release builder writes _release.py with the versions it packs.
    from ._release import ZITI_VERSION, ZROK_VERSION  # noqa: F811
except ImportError:
    pass

STANDIN_NOTICE = "lab stand-in for zrok v2 (printer-fleet tests), not the real zrok"
