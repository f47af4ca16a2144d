"""Identity files (`~/.zrok2/identities/<name>.json`) and how they locate the edge router.

A real identity file is an enrolled OpenZiti identity: the controller URL
(`ztAPI`) plus a client certificate, and the SDK learns the edge routers from
the OpenZiti controller. The stand-in writes the same top-level keys with
placeholder key material, and finds its router like this:

1. `standin.router` in the identity file, written by a stand-in controller
   started with ZROK2_STANDIN_ROUTER_ADDRESS (the tests use it for loopback
   ports);
2. otherwise port 3022 on the host of the zrok API endpoint that the
   environment was enabled against (the router runs on the instance's
   frontend host, like the real `ziti-router`);
3. otherwise 127.0.0.1:3022, for the controller and the frontend, which run
   on the instance's own host.
"""

import json
import os
import urllib.parse

from . import relay

ROUTER_PORT = 3022
ROUTER_OVERRIDE_ENV = "ZROK2_STANDIN_ROUTER_ADDRESS"


def document(zid, name, ziti_api_endpoint):
    """Return the identity document that the controller hands out for a new identity."""
    doc = {
        "ztAPI": f"{ziti_api_endpoint.rstrip('/')}/edge/client/v1" if ziti_api_endpoint else "",
        "id": {"key": "pem:stand-in has no key", "cert": "pem:stand-in has no certificate", "ca": "pem:"},
        "configTypes": None,
        "standin": {"zId": zid, "name": name},
    }
    override = os.environ.get(ROUTER_OVERRIDE_ENV)
    if override:
        doc["standin"]["router"] = override
    return doc


def load(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def router_address(doc, api_endpoint=None):
    """Return the (host, port) of the edge router for an identity document."""
    router = (doc.get("standin") or {}).get("router")
    if router:
        return relay.parse_address(router, ROUTER_PORT)
    if api_endpoint:
        host = urllib.parse.urlsplit(api_endpoint).hostname
        if host:
            return host, ROUTER_PORT
    return "127.0.0.1", ROUTER_PORT
