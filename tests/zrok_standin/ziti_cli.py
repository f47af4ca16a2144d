"""The `ziti` command of the lab stand-in (not OpenZiti).

It accepts the OpenZiti CLI syntax for what a self-hosted zrok instance
needs: `ziti controller run|edge init`, `ziti router run|enroll`,
`ziti edge login|create|list|delete|update`, `ziti pki create ...` and
`ziti create config controller|router edge`. Certificates and keys that
`ziti pki` and `ziti router enroll` write are placeholders: the stand-in
uses no TLS. Other commands exit with status 1 and print that the stand-in
lacks them.
"""

import base64
import json
import os
import sys

from . import ZITI_VERSION, output, relay, yamlsubset
from .ziti_client import ManagementClient, ZitiError
from .cobra import CobraParser

NOTICE = "OpenZiti stand-in for the printer-fleet lab, not OpenZiti"
PLACEHOLDER_CERT = "-----BEGIN CERTIFICATE-----\nc3RhbmQtaW4gcGxhY2Vob2xkZXI=\n-----END CERTIFICATE-----\n"
PLACEHOLDER_KEY = "-----BEGIN EC PRIVATE KEY-----\nc3RhbmQtaW4gcGxhY2Vob2xkZXI=\n-----END EC PRIVATE KEY-----\n"

# `ziti edge create|list|delete <type>` names and their management API collections.
TYPES = {
    "identity": "identities",
    "identities": "identities",
    "service": "services",
    "services": "services",
    "edge-router": "edge-routers",
    "edge-routers": "edge-routers",
    "er": "edge-routers",
    "ers": "edge-routers",
    "edge-router-policy": "edge-router-policies",
    "edge-router-policies": "edge-router-policies",
    "erp": "edge-router-policies",
    "erps": "edge-router-policies",
    "service-edge-router-policy": "service-edge-router-policies",
    "service-edge-router-policies": "service-edge-router-policies",
    "serp": "service-edge-router-policies",
    "serps": "service-edge-router-policies",
    "service-policy": "service-policies",
    "service-policies": "service-policies",
    "sp": "service-policies",
    "sps": "service-policies",
    "config": "configs",
    "configs": "configs",
    "config-type": "config-types",
    "config-types": "config-types",
    "terminators": "terminators",
}


class _Parser(CobraParser):
    def error(self, message):
        sys.stderr.write(f"Error: {message}\n")
        raise SystemExit(1)


def _session_file():
    home = os.environ.get("HOME") or os.path.expanduser("~")
    return os.path.join(os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config"), "ziti", "ziti-cli.json")


def _load_session():
    try:
        with open(_session_file(), encoding="utf-8") as handle:
            return json.load(handle)["identities"]["default"]
    except (OSError, KeyError, ValueError):
        sys.stderr.write("error: no credentials found; run 'ziti edge login' first\n")
        raise SystemExit(1)


def _client():
    session = _load_session()
    return ManagementClient(session["url"], session["token"])


def _fail(message):
    sys.stderr.write(f"error: {message}\n")
    raise SystemExit(1)


def _roles(values):
    roles = []
    for value in values or []:
        roles.extend(part.strip() for part in value.split(",") if part.strip())
    return roles


# --- servers -----------------------------------------------------------------


def cmd_controller_run(args):
    from .ziti_controller import ZitiController, load_config

    ZitiController(load_config(args.config)).serve_forever()


def cmd_controller_edge_init(args):
    from .ziti_controller import init_edge, load_config

    try:
        init_edge(load_config(args.config), args.username, args.password)
    except ValueError as exc:
        _fail(str(exc))
    print(f"initialized the edge with admin '{args.username}'")


def cmd_router_run(args):
    cfg = yamlsubset.load_file(args.config)
    address = "tls:0.0.0.0:3022"
    for listener in (cfg or {}).get("listeners") or []:
        if listener.get("binding") == "edge" and listener.get("address"):
            address = listener["address"]
    host, port = relay.parse_address(address, 3022)
    output.info(f"{NOTICE}: router v{ZITI_VERSION}")
    relay.Router(host, port).serve_forever()


def cmd_router_enroll(args):
    cfg = yamlsubset.load_file(args.config) or {}
    if not os.path.exists(args.jwt):
        _fail(f"enrollment token file '{args.jwt}' not found")
    files = cfg.get("identity") or {}
    for key in ("cert", "server_cert", "ca"):
        if files.get(key):
            _write_placeholder(files[key], PLACEHOLDER_CERT)
    if files.get("key"):
        _write_placeholder(files["key"], PLACEHOLDER_KEY, mode=0o600)
    print(f"enrolled router with '{args.jwt}' (stand-in: certificates are placeholders)")


def _write_placeholder(path, text, mode=0o644):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if not os.path.exists(path):
        with open(os.open(path, os.O_WRONLY | os.O_CREAT, mode), "w", encoding="utf-8") as handle:
            handle.write(text)


# --- edge ---------------------------------------------------------------------


def cmd_edge_login(args):
    url = args.url or os.environ.get("ZITI_CTRL_ADVERTISED_ADDRESS", "")
    if not url:
        _fail("missing controller URL: ziti edge login <host:port> -u <user> -p <password>")
    if not args.username or args.password is None:
        _fail("username and password are required (-u, -p)")
    client = ManagementClient(url)
    try:
        token = client.login(args.username, args.password)
    except ZitiError as exc:
        _fail(str(exc))
    path = _session_file()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as handle:
        json.dump({"identities": {"default": {"url": url, "username": args.username, "token": token}}}, handle)
    print(f"Token: {token}")
    print(f"Saving identity 'default' to {path}")


def cmd_edge_create(args):
    kind = TYPES.get(args.type)
    if kind is None or kind == "terminators":
        _fail(f"the stand-in cannot create '{args.type}'")
    positional = list(args.args)
    if kind == "identities" and positional and positional[0] in ("device", "user", "service"):
        positional = positional[1:]
    if not positional:
        _fail(f"missing name: ziti edge create {args.type} <name>")

    body = {"name": positional[0]}
    if args.role_attributes:
        body["roleAttributes"] = _roles(args.role_attributes)
    if kind == "identities":
        body.update({"type": "Device", "isAdmin": bool(args.admin)})
    elif kind == "services":
        body["configs"] = _roles(args.configs)
        body["encryptionRequired"] = True
    elif kind == "edge-routers":
        body["isTunnelerEnabled"] = bool(args.tunneler_enabled)
    elif kind == "edge-router-policies":
        body.update({"edgeRouterRoles": _roles(args.edge_router_roles), "identityRoles": _roles(args.identity_roles), "semantic": args.semantic})
    elif kind == "service-edge-router-policies":
        body.update({"edgeRouterRoles": _roles(args.edge_router_roles), "serviceRoles": _roles(args.service_roles), "semantic": args.semantic})
    elif kind == "service-policies":
        if len(positional) < 2 or positional[1] not in ("Bind", "Dial"):
            _fail("usage: ziti edge create service-policy <name> <Bind|Dial> --identity-roles ... --service-roles ...")
        body.update({"type": positional[1], "identityRoles": _roles(args.identity_roles), "serviceRoles": _roles(args.service_roles), "semantic": args.semantic})
    elif kind == "configs":
        if len(positional) < 3:
            _fail("usage: ziti edge create config <name> <type> <JSON>")
        body.update({"configTypeId": positional[1], "data": json.loads(positional[2])})

    client = _client()
    status, answer = client.request("POST", kind, body)
    if status not in (200, 201):
        _fail(f"error creating {args.type} '{body['name']}': {answer.get('error', {}).get('message', status)}")

    entity_id = answer["data"]["id"]
    if kind in ("edge-routers", "identities") and args.jwt_output_file:
        _write_enrollment_token(args.jwt_output_file, entity_id, body["name"])
    print(f"New {args.type} {body['name']} created with id: {entity_id}")


def _write_enrollment_token(path, entity_id, name):
    def part(value):
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    token = ".".join([part({"alg": "none", "typ": "JWT"}), part({"sub": entity_id, "name": name, "em": "standin"}), "standin"])
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(token)


def cmd_edge_list(args):
    kind = TYPES.get(args.type)
    if kind is None:
        _fail(f"the stand-in cannot list '{args.type}'")
    client = _client()
    status, answer = client.request("GET", kind, query={"filter": args.filter or "true"})
    if status != 200:
        _fail(f"error listing {args.type}: {answer.get('error', {}).get('message', status)}")
    if args.json:
        print(json.dumps(answer, indent=4))
        return
    rows = [[e.get("id", ""), e.get("name", ""), ",".join(e.get("roleAttributes") or [])] for e in answer["data"]]
    print(output.render_table(["ID", "Name", "Attributes"], rows))
    print(f"results: {len(rows)}")


def cmd_edge_delete(args):
    kind = TYPES.get(args.type)
    if kind is None:
        _fail(f"the stand-in cannot delete '{args.type}'")
    client = _client()
    status, answer = client.request("DELETE", f"{kind}/{args.name}")
    if status != 200:
        _fail(f"error deleting {args.type} '{args.name}': {answer.get('error', {}).get('message', status)}")
    print(f"deleted {args.type} '{args.name}'")


def cmd_edge_update(args):
    kind = TYPES.get(args.type)
    if kind is None:
        _fail(f"the stand-in cannot update '{args.type}'")
    body = {}
    if args.role_attributes is not None:
        body["roleAttributes"] = _roles(args.role_attributes)
    client = _client()
    status, answer = client.request("PATCH", f"{kind}/{args.name}", body)
    if status != 200:
        _fail(f"error updating {args.type} '{args.name}': {answer.get('error', {}).get('message', status)}")
    print(f"updated {args.type} '{args.name}'")


# --- pki and config generation ------------------------------------------------------


def cmd_pki_create(args):
    root = args.pki_root
    if not root:
        _fail("--pki-root is required")
    if args.kind == "ca":
        name = args.ca_file or "ca"
        files = [(f"{name}/certs/{name}.cert", PLACEHOLDER_CERT), (f"{name}/keys/{name}.key", PLACEHOLDER_KEY)]
    elif args.kind == "intermediate":
        name = args.intermediate_file or "intermediate"
        files = [
            (f"{name}/certs/{name}.cert", PLACEHOLDER_CERT),
            (f"{name}/certs/{name}.chain.pem", PLACEHOLDER_CERT),
            (f"{name}/keys/{name}.key", PLACEHOLDER_KEY),
        ]
    elif args.kind == "server":
        name = args.server_file or "server"
        key = args.key_file or name
        files = [
            (f"{args.ca_name}/certs/{name}.cert", PLACEHOLDER_CERT),
            (f"{args.ca_name}/certs/{name}.chain.pem", PLACEHOLDER_CERT),
            (f"{args.ca_name}/keys/{key}.key", PLACEHOLDER_KEY),
        ]
    elif args.kind == "client":
        name = args.client_file or "client"
        key = args.key_file or name
        files = [
            (f"{args.ca_name}/certs/{name}.cert", PLACEHOLDER_CERT),
            (f"{args.ca_name}/certs/{name}.chain.pem", PLACEHOLDER_CERT),
            (f"{args.ca_name}/keys/{key}.key", PLACEHOLDER_KEY),
        ]
    else:
        files = [(f"{args.ca_name}/keys/{args.key_file or 'key'}.key", PLACEHOLDER_KEY)]
    for relative, text in files:
        path = os.path.join(root, relative)
        _write_placeholder(path, text, 0o600 if path.endswith(".key") else 0o644)
        print(f"wrote {path}")


def _emit_yaml(value, indent=0):
    pad = " " * indent
    lines = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:")
                lines.extend(_emit_yaml(item, indent + 2))
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
    else:
        for item in value:
            if isinstance(item, dict):
                nested = _emit_yaml(item, indent + 2)
                lines.append(f"{pad}- {nested[0].strip()}")
                lines.extend(nested[1:])
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    return lines


def _scalar(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if value is None:
        return "null"
    if value == []:
        return "[]"
    if value == {}:
        return "{}"
    return json.dumps(str(value))


def cmd_create_config(args):
    home = os.environ.get("ZITI_HOME", os.getcwd())
    ctrl_address = os.environ.get("ZITI_CTRL_ADVERTISED_ADDRESS", "127.0.0.1")
    ctrl_port = int(os.environ.get("ZITI_CTRL_ADVERTISED_PORT", "1280"))
    if args.component == "controller":
        cfg = {
            "v": 3,
            "db": os.path.join(home, "db", "ctrl.db"),
            "identity": _identity_files(home, "ctrl"),
            "ctrl": {"listener": f"tls:0.0.0.0:{ctrl_port}"},
            "web": [
                {
                    "name": "client-management",
                    "bindPoints": [{"interface": f"0.0.0.0:{ctrl_port}", "address": f"{ctrl_address}:{ctrl_port}"}],
                    "apis": [{"binding": "edge-management"}, {"binding": "edge-client"}],
                }
            ],
        }
    else:
        name = args.router_name or "router"
        router_address = os.environ.get("ZITI_ROUTER_ADVERTISED_ADDRESS", "127.0.0.1")
        router_port = int(os.environ.get("ZITI_ROUTER_PORT", "3022"))
        cfg = {
            "v": 3,
            "identity": _identity_files(home, name),
            "ctrl": {"endpoint": f"tls:{ctrl_address}:{ctrl_port}"},
            "listeners": [
                {"binding": "edge", "address": f"tls:0.0.0.0:{router_port}", "options": {"advertise": f"{router_address}:{router_port}"}}
            ],
            "edge": {"csr": {"sans": {"dns": [router_address]}}},
        }
    text = "# generated by the OpenZiti stand-in of the printer-fleet lab\n" + "\n".join(_emit_yaml(cfg)) + "\n"
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)


def _identity_files(home, name):
    return {
        "cert": os.path.join(home, f"{name}.cert"),
        "server_cert": os.path.join(home, f"{name}.server.chain.cert"),
        "key": os.path.join(home, f"{name}.key"),
        "ca": os.path.join(home, "ca.cert"),
    }


def build_parser():
    parser = _Parser(prog="ziti", description=f"ziti: {NOTICE}.")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    commands.add_parser("version", help="show the stand-in's version")

    controller = commands.add_parser("controller", help="run or initialize the controller").add_subparsers(dest="action", parser_class=_Parser)
    controller.add_parser("run", help="run the controller").add_argument("config")
    edge = controller.add_parser("edge", help="controller edge commands").add_subparsers(dest="sub", parser_class=_Parser)
    init = edge.add_parser("init", help="initialize the edge with a default admin")
    init.add_argument("config")
    init.add_argument("-u", "--username", required=True)
    init.add_argument("-p", "--password", required=True)
    init.add_argument("-n", "--name", default="Default Admin")

    router = commands.add_parser("router", help="run or enroll a router").add_subparsers(dest="action", parser_class=_Parser)
    router.add_parser("run", help="run the router").add_argument("config")
    enroll = router.add_parser("enroll", help="enroll the router")
    enroll.add_argument("config")
    enroll.add_argument("-j", "--jwt", required=True)

    edge_cmd = commands.add_parser("edge", help="manage the edge").add_subparsers(dest="action", parser_class=_Parser)
    login = edge_cmd.add_parser("login", help="log in to a controller")
    login.add_argument("url", nargs="?", default="")
    login.add_argument("-u", "--username")
    login.add_argument("-p", "--password")
    login.add_argument("-y", "--yes", action="store_true", help="accept the controller's certificate")
    login.add_argument("--ca", default="")
    create = edge_cmd.add_parser("create", help="create an entity")
    create.add_argument("type")
    create.add_argument("args", nargs="*")
    for flag in ("--role-attributes", "--edge-router-roles", "--identity-roles", "--service-roles", "--configs"):
        create.add_argument(flag, action="append", default=[])
    create.add_argument("-a", dest="role_attributes", action="append")
    create.add_argument("-c", dest="configs", action="append")
    create.add_argument("--semantic", default="AllOf")
    create.add_argument("-o", "--jwt-output-file", default="")
    create.add_argument("-t", "--tunneler-enabled", action="store_true")
    create.add_argument("-A", "--admin", action="store_true")
    listing = edge_cmd.add_parser("list", help="list entities")
    listing.add_argument("type")
    listing.add_argument("filter", nargs="?", default="")
    listing.add_argument("-j", "--output-json", dest="json", action="store_true", help="output the API's JSON")
    delete = edge_cmd.add_parser("delete", help="delete an entity")
    delete.add_argument("type")
    delete.add_argument("name")
    update = edge_cmd.add_parser("update", help="update an entity")
    update.add_argument("type")
    update.add_argument("name")
    update.add_argument("-a", "--role-attributes", action="append", default=None)

    pki = commands.add_parser("pki", help="placeholder PKI files").add_subparsers(dest="action", parser_class=_Parser)
    pki_create = pki.add_parser("create", help="create placeholder PKI files")
    pki_create.add_argument("kind", choices=["ca", "intermediate", "server", "client", "key"])
    for flag in ("--pki-root", "--ca-file", "--ca-name", "--intermediate-file", "--intermediate-name", "--server-file", "--client-file", "--key-file", "--server-name", "--client-name"):
        pki_create.add_argument(flag, default="")
    for flag in ("--dns", "--ip"):
        pki_create.add_argument(flag, action="append", default=[])

    create_cmd = commands.add_parser("create", help="generate configuration").add_subparsers(dest="action", parser_class=_Parser)
    config = create_cmd.add_parser("config", help="generate a controller or router configuration")
    config.add_argument("component", choices=["controller", "router"])
    config.add_argument("mode", nargs="?", default="edge")
    config.add_argument("-o", "--output", default="")
    config.add_argument("-n", "--routerName", dest="router_name", default="")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    command = args.command
    action = getattr(args, "action", None)
    handlers = {
        ("controller", "run"): cmd_controller_run,
        ("router", "run"): cmd_router_run,
        ("router", "enroll"): cmd_router_enroll,
        ("edge", "login"): cmd_edge_login,
        ("edge", "create"): cmd_edge_create,
        ("edge", "list"): cmd_edge_list,
        ("edge", "delete"): cmd_edge_delete,
        ("edge", "update"): cmd_edge_update,
        ("pki", "create"): cmd_pki_create,
        ("create", "config"): cmd_create_config,
    }
    if command == "version":
        print(f"v{ZITI_VERSION}\n({NOTICE})")
        return 0
    if command == "controller" and action == "edge" and getattr(args, "sub", None) == "init":
        cmd_controller_edge_init(args)
        return 0
    handler = handlers.get((command, action))
    if handler is None:
        sys.stderr.write(f"Error: 'ziti {command or ''} {action or ''}' is incomplete or not implemented by the stand-in\n")
        return 1
    handler(args)
    return 0
