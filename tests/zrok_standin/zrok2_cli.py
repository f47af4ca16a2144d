"""The `zrok2` command of the lab stand-in (not the real zrok).

Verbs, flags, output and exit codes follow zrok v2.0.x's Cobra commands for
the subset the printer-fleet roles, agent and control server run. Other
verbs exit with status 1 and print that the stand-in lacks them.
"""

import json
import os
import socket
import sys
import getpass

from . import STANDIN_NOTICE, output
from .env import ApiError, ClientError, Root, client_version
from .cobra import CobraParser

BANNER = "zrok2 (stand-in)"


class _Parser(CobraParser):
    def error(self, message):
        # Cobra prints usage errors as `Error: ...` and exits with status 1.
        sys.stderr.write(f"Error: {message}\nRun '{self.prog} --help' for usage.\n")
        raise SystemExit(1)


def build_parser():
    parser = _Parser(prog="zrok2", description=f"zrok2 {STANDIN_NOTICE}.")
    parser.add_argument("--panic", action="store_true", help="panic instead of showing pretty errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="enable verbose logging")
    verbs = parser.add_subparsers(dest="verb", parser_class=_Parser)

    verbs.add_parser("version", help="show the stand-in's version")

    config = verbs.add_parser("config", help="configure your zrok environment").add_subparsers(dest="action", parser_class=_Parser)
    config_set = config.add_parser("set", help="set a value into the environment config")
    config_set.add_argument("name")
    config_set.add_argument("value")
    config.add_parser("get", help="get a value from the environment config").add_argument("name")
    config.add_parser("unset", help="unset a value from the environment config").add_argument("name")

    enable = verbs.add_parser("enable", help="enable an environment for zrok")
    enable.add_argument("token", help="account token")
    enable.add_argument("--headless", action="store_true", help="disable TUI and run headless")
    enable.add_argument("-d", "--description", default="<user>@<hostname>", help="description of this environment")

    verbs.add_parser("disable", help="disable (and clean up) the enabled zrok environment")

    status = verbs.add_parser("status", aliases=["st"], help="show the current environment status")
    status.add_argument("--secrets", action="store_true", help="show secrets in status output")

    create = verbs.add_parser("create", help="create objects").add_subparsers(dest="object", parser_class=_Parser)
    create_name = create.add_parser("name", help="create a name within a namespace")
    create_name.add_argument("name")
    create_name.add_argument("-n", "--namespace-token", default=None, help="namespace token")

    delete = verbs.add_parser("delete", help="delete objects").add_subparsers(dest="object", parser_class=_Parser)
    delete_share = delete.add_parser("share", help="delete a share")
    delete_share.add_argument("share_token")
    delete_share.add_argument("--envzid", default="", help="override environment ziti identifier")
    delete_name = delete.add_parser("name", help="delete a name")
    delete_name.add_argument("name")
    delete_name.add_argument("-n", "--namespace-token", default=None, help="namespace token")

    listing = verbs.add_parser("list", aliases=["ls"], help="list objects").add_subparsers(dest="object", parser_class=_Parser)
    list_shares = listing.add_parser("shares", help="list shares in your account with optional filtering")
    list_shares.add_argument("--json", action="store_true", help="output raw JSON instead of table")
    for flag in ("env-zid", "share-mode", "backend-mode", "share-token", "target"):
        list_shares.add_argument(f"--{flag}", default="")
    list_names = listing.add_parser("names", help="list names")
    list_names.add_argument("-n", "--namespace-token", default="", help="namespace token")
    list_names.add_argument("--json", action="store_true", help="output raw JSON instead of formatted tables")
    list_envs = listing.add_parser("environments", help="list environments")
    list_envs.add_argument("--json", action="store_true", help="output raw JSON instead of table")
    listing.add_parser("namespaces", help="list namespaces you can use")

    overview = verbs.add_parser("overview", help="display a formatted overview of zrok account details")
    overview.add_argument("--json", action="store_true", help="output raw JSON instead of formatted tables")

    share = verbs.add_parser("share", help="create backend access for shares").add_subparsers(dest="mode", parser_class=_Parser)
    public = share.add_parser("public", help="share a target resource publicly")
    public.add_argument("target")
    public.add_argument("-n", "--name-selection", action="append", default=None, help="namespace:name selection (repeatable)")
    public.add_argument("-b", "--backend-mode", default="proxy", help="the backend mode {proxy}")
    public.add_argument("--headless", action="store_true", help="disable TUI and run headless")
    public.add_argument("--basic-auth", action="append", default=[], help="basic authentication user <username:password> (repeatable)")
    public.add_argument("--oauth-provider", default="", help="not supported by the stand-in")
    public.add_argument("--open", action="store_true", help="enable open permission mode")
    public.add_argument("--insecure", action="store_true", help="accepted and ignored (the stand-in proxies http only)")
    public.add_argument("--force-local", action="store_true", help="accepted; the stand-in has no agent")

    admin = verbs.add_parser("admin", help="administration and maintenance").add_subparsers(dest="action", parser_class=_Parser)
    bootstrap = admin.add_parser("bootstrap", help="bootstrap the underlying network for zrok")
    bootstrap.add_argument("config_path")
    bootstrap.add_argument("--skip-frontend", action="store_true", help="skip frontend identity bootstrapping")

    admin_create = admin.add_parser("create", help="create global resources").add_subparsers(dest="object", parser_class=_Parser)
    account = admin_create.add_parser("account", help="pre-populate an account; prints its account token")
    account.add_argument("email")
    account.add_argument("password")
    frontend = admin_create.add_parser("frontend", help="create a global public frontend")
    frontend.add_argument("zid")
    frontend.add_argument("public_name")
    frontend.add_argument("url_template", nargs="?", default="")
    frontend.add_argument("--closed", action="store_true", help="enable closed permission mode")
    frontend.add_argument("--dynamic", action="store_true", help="enable dynamic mode for the frontend")
    admin_create.add_parser("identity", aliases=["id"], help="create an identity for a public frontend").add_argument("name")
    namespace = admin_create.add_parser("namespace", help="create a new namespace")
    namespace.add_argument("name")
    namespace.add_argument("-t", "--token", default="", help="provide a custom token")
    namespace.add_argument("-d", "--description", default="", help="namespace description")
    namespace.add_argument("-o", "--open", action="store_true", help="namespace is open to all accounts")
    mapping = admin_create.add_parser("namespace-frontend", aliases=["fn"], help="map a frontend to a namespace")
    mapping.add_argument("namespace_token")
    mapping.add_argument("frontend_token")
    mapping.add_argument("--default", action="store_true", help="create mapping as default")

    admin_delete = admin.add_parser("delete", help="delete global resources").add_subparsers(dest="object", parser_class=_Parser)
    admin_delete.add_parser("account", help="delete an account").add_argument("email")
    admin_delete.add_parser("frontend", help="delete a frontend").add_argument("frontend_token")
    admin_delete.add_parser("identity", help="delete an identity").add_argument("zid")

    admin_list = admin.add_parser("list", help="list global resources").add_subparsers(dest="object", parser_class=_Parser)
    admin_list.add_parser("frontends", aliases=["fes"], help="list global public frontends").add_argument(
        "--extra", action="store_true", help="show extra (v1) fields"
    )
    admin_list.add_parser("namespaces", help="list all namespaces")
    admin_list.add_parser("namespace-frontend", aliases=["nf"], help="list frontends mapped to a namespace").add_argument(
        "namespace_token"
    )
    admin_update = admin.add_parser("update", help="update global resources").add_subparsers(dest="object", parser_class=_Parser)
    update_frontend = admin_update.add_parser("frontend", help="update a global frontend")
    update_frontend.add_argument("frontend_token")
    update_frontend.add_argument("--dynamic", action="store_true", help="enable dynamic mode")

    controller = verbs.add_parser("controller", help="start a zrok controller")
    controller.add_argument("config_path", help="ctrl.yml, or 'validate' followed by ctrl.yml")
    controller.add_argument("extra", nargs="?", default=None)

    access = verbs.add_parser("access", help="create frontend access for shares").add_subparsers(dest="mode", parser_class=_Parser)
    access.add_parser("dynamicProxy", help="run a dynamic proxy frontend").add_argument("config_path")
    return parser


# --- helpers --------------------------------------------------------------------


def _client(root):
    try:
        return root.client()
    except ClientError as exc:
        output.tui_error("unable to get zrok client", exc)


def _admin_token():
    token = os.environ.get("ZROK2_ADMIN_TOKEN")
    if not token:
        sys.stderr.write("panic: please set ZROK2_ADMIN_TOKEN to a valid admin token for your zrok instance\n")
        raise SystemExit(2)
    return token


def _enabled_root():
    root = Root()
    if not root.is_enabled():
        sys.stderr.write("panic: environment is not enabled; run 'zrok2 enable' first\n")
        raise SystemExit(2)
    return root


def _fail(message, exc):
    # Unhandled errors panic in the real CLI: exit status 2 with the error text.
    sys.stderr.write(f"panic: {message}: {exc}\n")
    raise SystemExit(2)


def _print_json(value):
    print(json.dumps(value, indent=2))


# --- user verbs --------------------------------------------------------------


def cmd_version(args):
    print(f"{BANNER}: {STANDIN_NOTICE}\n\n{client_version()}\n")


def cmd_config(args):
    root = Root()
    keys = {"apiEndpoint": "api_endpoint", "defaultNamespace": "default_namespace", "headless": "headless", "superNetwork": "super_network"}
    if args.name not in keys:
        output.tui_error(f"unknown config name '{args.name}'")
    if args.action == "get":
        value = root.config().get(keys[args.name], "")
        print(f"{args.name} = {value}")
        return
    if args.action == "unset":
        root.unset_config(keys[args.name])
        print("zrok configuration updated")
        return
    value = args.value
    if args.name == "apiEndpoint" and not (value.startswith("http://") or value.startswith("https://")):
        output.tui_error("invalid apiEndpoint; please make sure URL starts with http:// or https://")
    if args.name in ("headless", "superNetwork"):
        if value.lower() not in ("true", "false", "1", "0", "t", "f"):
            output.tui_error(f"unable to parse value for '{args.name}'", value)
        value = value.lower() in ("true", "1", "t")
    root.set_config(keys[args.name], value)
    print("zrok configuration updated")
    if args.name == "apiEndpoint" and root.is_enabled():
        print("\n[WARNING]: because you have a zrok2 enable-d environment, you won't see your config change until you run zrok2 disable first!\n")


def cmd_enable(args):
    root = Root()
    if root.is_enabled():
        output.tui_error("you already have an enabled environment, zrok2 disable first before you zrok2 enable")
    hostname = socket.gethostname()
    username = getpass.getuser()
    description = args.description
    if description == "<user>@<hostname>":
        description = f"{username}@{hostname}"
    client = _client(root)
    endpoint, _ = root.api_endpoint()
    output.info("contacting the zrok service...")
    try:
        answer = client.call("POST", "/enable", "enable", {"description": description, "host": f"{hostname}; {username}"}, token=args.token)
    except (ApiError, OSError) as exc:
        output.error(f"the zrok service returned an error: {exc}")
        sys.stderr.write(f"\n[ERROR]: unable to create an environment at '{endpoint}'\n")
        raise SystemExit(1)
    root.set_environment(args.token, answer["identity"], endpoint)
    root.save_identity("environment", answer["cfg"])
    output.info("the zrok environment was successfully enabled...")


def cmd_disable(args):
    root = Root()
    if not root.is_enabled():
        output.tui_error("no environment found; nothing to disable!")
    environment = root.environment()
    try:
        client = root.client()
        client.call("POST", "/disable", "disable", {"identity": environment["ziti_identity"]}, token=environment["zrok_token"])
    except (ApiError, ClientError, OSError) as exc:
        output.warn(f"share cleanup failed ({exc}); will clean up local environment")
    root.delete_environment()
    root.delete_identity("environment")
    print("zrok environment disabled...")


def cmd_status(args):
    root = Root()
    sys.stderr.write("\n")
    print("Config:\n")
    endpoint, endpoint_source = root.api_endpoint()
    namespace, namespace_source = root.default_namespace()
    headless, headless_source = root.headless()
    print(
        output.render_table(
            ["Config", "Value", "Source"],
            [
                ["apiEndpoint", endpoint, endpoint_source],
                ["defaultNamespace", namespace, namespace_source],
                ["headless", headless, headless_source],
                ["superNetwork", bool(root.config().get("super_network")), "config" if "super_network" in root.config() else "binary"],
            ],
        )
    )
    sys.stderr.write("\n")
    if not root.is_enabled():
        sys.stderr.write("To create a local environment use the zrok2 enable command.\n")
    else:
        environment = root.environment()
        print("Environment:\n")
        if args.secrets:
            rows = [["Account Token", environment["zrok_token"]], ["EnvZId", environment["ziti_identity"]]]
        else:
            rows = [
                ["Account Token", "<<SET>>" if environment.get("zrok_token") else "<<UNSET>>"],
                ["EnvZId", "<<SET>>" if environment.get("ziti_identity") else "<<UNSET>>"],
            ]
        print(output.render_table(["Property", "Value"], rows))
    print()


def cmd_create_name(args):
    root = _enabled_root()
    namespace = args.namespace_token or root.default_namespace()[0]
    client = _client(root)
    try:
        client.call("POST", "/share/name", "createShareName", {"namespaceToken": namespace, "name": args.name}, token=root.environment()["zrok_token"])
    except (ApiError, OSError) as exc:
        output.tui_error("unable to create name", exc)
    output.info(f"created name '{args.name}' in namespace '{namespace}'")


def cmd_delete_name(args):
    root = _enabled_root()
    namespace = args.namespace_token or root.default_namespace()[0]
    client = _client(root)
    try:
        client.call("DELETE", "/share/name", "deleteShareName", {"namespaceToken": namespace, "name": args.name}, token=root.environment()["zrok_token"])
    except (ApiError, OSError) as exc:
        output.tui_error("unable to delete name", exc)
    output.info(f"deleted name '{args.name}' in namespace '{namespace}'")


def cmd_delete_share(args):
    root = _enabled_root()
    environment = root.environment()
    env_zid = args.envzid or environment["ziti_identity"]
    client = _client(root)
    try:
        client.call("DELETE", "/unshare", "unshare", {"envZId": env_zid, "shareToken": args.share_token}, token=environment["zrok_token"])
    except (ApiError, OSError) as exc:
        output.error(str(exc))
        raise SystemExit(1)
    output.info(f"deleted share '{args.share_token}' from environment '{env_zid}'")


def cmd_list_shares(args):
    root = _enabled_root()
    client = _client(root)
    query = {}
    for flag, key in (("env_zid", "envZId"), ("share_mode", "shareMode"), ("backend_mode", "backendMode"), ("share_token", "shareToken"), ("target", "target")):
        if getattr(args, flag):
            query[key] = getattr(args, flag)
    try:
        answer = client.call("GET", "/shares", "listShares", token=root.environment()["zrok_token"], query=query)
    except (ApiError, OSError) as exc:
        _fail("error listing shares", exc)

    if args.json:
        _print_json(answer)
        return

    shares = answer.get("shares") or []
    rows = []
    for share in shares:
        env_zid = share["envZId"] if len(share["envZId"]) <= 12 else share["envZId"][:12] + "..."
        rows.append(
            [
                share["shareToken"],
                "\n".join(share.get("frontendEndpoints") or []),
                env_zid,
                share["shareMode"],
                share["backendMode"],
                share.get("target") or "-",
                "!!" if share.get("limited") else "",
                output.unix_to_text(share["createdAt"] // 1000),
            ]
        )

    print()
    print(output.render_table(["Share Token", "Frontend Endpoints", "Env", "Mode", "Backend", "Target", "Limited", "Created"], rows))
    print()
    if not shares:
        print("no shares found matching the specified filters.\n")
    else:
        print(f"total: {len(shares)} share(s)\n")


def cmd_list_names(args):
    root = _enabled_root()
    client = _client(root)
    token = root.environment()["zrok_token"]
    try:
        if args.namespace_token:
            names = client.call("GET", f"/share/names/{args.namespace_token}", "listNamesForNamespace", token=token)
        else:
            names = client.call("GET", "/share/names", "listAllNames", token=token)
    except (ApiError, OSError) as exc:
        _fail("error listing names", exc)
    if args.json:
        _print_json(names)
        return
    rows = [
        [f"{n['name']}.{n['namespaceName']}", n["namespaceToken"], n.get("shareToken") or "-", n["reserved"], output.unix_to_text(n["createdAt"])]
        for n in names
    ]
    print()
    print(output.render_table(["URL", "Namespace Token", "Share Token", "Reserved", "Created"], rows))
    print()


def cmd_list_environments(args):
    root = _enabled_root()
    client = _client(root)
    try:
        answer = client.call("GET", "/environments", "listEnvironments", token=root.environment()["zrok_token"])
    except (ApiError, OSError) as exc:
        _fail("error listing environments", exc)
    if args.json:
        _print_json(answer)
        return
    rows = [[e["envZId"], e["description"], e["host"], e["shareCount"]] for e in answer.get("environments") or []]
    print()
    print(output.render_table(["Env ZId", "Description", "Host", "Shares"], rows))
    print()


def cmd_list_namespaces(args):
    root = _enabled_root()
    client = _client(root)
    try:
        namespaces = client.call("GET", "/share/namespaces", "listShareNamespaces", token=root.environment()["zrok_token"])
    except (ApiError, OSError) as exc:
        _fail("error listing namespaces", exc)
    print()
    print(output.render_table(["Name", "Description", "Token"], [[n["name"], n["description"], n["namespaceToken"]] for n in namespaces]))
    print()


def cmd_overview(args):
    root = _enabled_root()
    client = _client(root)
    try:
        answer = client.call("GET", "/overview", "overview", token=root.environment()["zrok_token"])
    except (ApiError, OSError) as exc:
        output.tui_error("error getting overview", exc)
    if args.json:
        _print_json(answer)
        return
    print()
    if answer.get("namespaces"):
        print("* Namespaces\n")
        print(output.render_table(["Name", "Description", "Token"], [[n["name"], n["description"], n["namespaceToken"]] for n in answer["namespaces"]]))
        print()
    if answer.get("names"):
        print("* Names\n")
        rows = [
            [f"{n['name']}.{n['namespaceName']}", n["namespaceToken"], n.get("shareToken") or "-", n["reserved"], output.unix_to_text(n["createdAt"])]
            for n in answer["names"]
        ]
        print(output.render_table(["URL", "Namespace Token", "Share Token", "Reserved", "Created"], rows))
        print()
    if answer.get("environments"):
        print("* Environments\n")
        for item in answer["environments"]:
            env = item["environment"]
            print("╔════════════════════════───────────────────────")
            print(f"> {env['description']} (envZId: {env['zId']})")
            if env.get("host"):
                print(f"      Host: {env['host']}")
            for share in item.get("shares") or []:
                print(f"    share {share['shareToken']} -> {share.get('target', '')} {' '.join(share.get('frontendEndpoints') or [])}")
            print()


def cmd_share_public(args):
    from . import share

    root = Root()
    if not root.is_enabled():
        output.tui_error("unable to create share", "unable to load environment; did you 'zrok2 enable'?")
    if args.oauth_provider:
        output.tui_error("unable to create share", "the stand-in does not support --oauth-provider")
    if args.oauth_provider and args.basic_auth:
        output.tui_error("if any flags in the group [basic-auth oauth-provider] are set none of the others can be")
    if args.backend_mode != "proxy":
        output.tui_error("unable to create share", f"the stand-in supports only backend mode 'proxy', not '{args.backend_mode}'")
    try:
        target = share.parse_target(args.target)
    except ValueError as exc:
        output.tui_error("unable to create share", exc)

    selections = []
    for text in args.name_selection or [root.default_namespace()[0]]:
        namespace, _, name = text.partition(":")
        if not namespace:
            output.tui_error("unable to parse namespace selection", f"invalid name selection '{text}'")
        selections.append({"namespaceToken": namespace, "name": name} if name else {"namespaceToken": namespace})
    body = {
        "envZId": root.environment()["ziti_identity"],
        "shareMode": "public",
        "nameSelections": selections,
        "backendMode": args.backend_mode,
        "target": args.target,
        "authScheme": "none",
        "permissionMode": "open" if args.open else "closed",
    }
    if args.basic_auth:
        users = []
        for pair in args.basic_auth:
            parts = pair.split(":")
            if len(parts) != 2:
                output.tui_error("unable to create share", "invalid username:password")
            users.append({"username": parts[0].strip(), "password": parts[1].strip()})
        body["authScheme"] = "basic"
        body["basicAuthUsers"] = users

    client = _client(root)
    try:
        share.run_public(root, client, body, target, args.headless)
    except (ApiError, OSError) as exc:
        output.tui_error("unable to create share", f"unable to create share: {exc}")


# --- admin verbs ---------------------------------------------------------------


def cmd_admin_bootstrap(args):
    from . import controller

    try:
        cfg = controller.load_config(args.config_path)
    except (controller.ConfigError, ValueError) as exc:
        _fail("error loading config", exc)
    ctrl = controller.Controller(cfg)
    with ctrl.store.transaction() as data:
        if not any(t["name"] == "zrok.proxy.v1" for t in data["config_types"]):
            data["config_types"].append({"name": "zrok.proxy.v1"})
            output.info("created config type 'zrok.proxy.v1'")
        if not args.skip_frontend:
            root = Root()
            existing = [i for i in data["identities"] if i["name"] == "public"]
            if existing and os.path.exists(root.identity_path("public")):
                output.info(f"frontend identity 'public' already exists with ziti id '{existing[0]['zid']}'")
            else:
                data["identities"] = [i for i in data["identities"] if i["name"] != "public"]
                try:
                    zid, cfg_text = ctrl.new_identity(data, "public")
                except controller.ApiError:
                    _fail("error bootstrapping", "cannot create the 'public' identity on the OpenZiti controller (see the error above)")
                root.save_identity("public", cfg_text)
                output.info(f"created frontend identity 'public' with ziti id '{zid}'")
    output.info("bootstrap complete!")


def _admin_call(method, path, operation, body=None):
    token = _admin_token()
    client = _client(Root())
    try:
        return client.call(method, path, operation, body, token=token)
    except (ApiError, OSError) as exc:
        raise _AdminFailure(exc) from exc


class _AdminFailure(Exception):
    pass


def cmd_admin_create_account(args):
    try:
        answer = _admin_call("POST", "/account", "createAccount", {"email": args.email, "password": args.password})
    except _AdminFailure as exc:
        _fail("error creating account", exc)
    print(answer["accountToken"])


def cmd_admin_create_frontend(args):
    body = {
        "zId": args.zid,
        "public_name": args.public_name,
        "url_template": args.url_template,
        "permissionMode": "closed" if args.closed else "open",
        "dynamic": args.dynamic,
    }
    try:
        answer = _admin_call("POST", "/frontend", "createFrontend", body)
    except _AdminFailure as exc:
        cause = exc.__cause__
        if isinstance(cause, ApiError) and cause.status == 400:
            output.tui_error("create frontend request failed: name already exists", cause)
        output.tui_error("create frontend request failed", cause)
    output.info(f"created global public frontend '{answer['frontendToken']}'")


def cmd_admin_create_identity(args):
    root = Root()
    path = root.identity_path(args.name)
    if os.path.exists(path):
        output.error(f"identity '{args.name}' already exists at '{path}'")
        raise SystemExit(1)
    try:
        answer = _admin_call("POST", "/identity", "createIdentity", {"name": args.name})
    except _AdminFailure as exc:
        _fail("error creating identity", exc)
    root.save_identity(args.name, answer["cfg"])
    print(f"zrok identity '{args.name}' created with ziti id '{answer['identity']}'")


def cmd_admin_create_namespace(args):
    body = {"name": args.name, "description": args.description, "open": args.open}
    if args.token:
        body["token"] = args.token
    try:
        answer = _admin_call("POST", "/namespace", "createNamespace", body)
    except _AdminFailure as exc:
        _fail("error creating namespace", exc)
    output.info(f"created namespace '{args.name}' with token '{answer['namespaceToken']}'")


def cmd_admin_create_namespace_frontend(args):
    body = {"namespaceToken": args.namespace_token, "frontendToken": args.frontend_token, "isDefault": args.default}
    try:
        _admin_call("POST", "/namespace/frontend/mapping", "addNamespaceFrontendMapping", body)
    except _AdminFailure as exc:
        output.error(f"error creating namespace-frontend mapping: {exc.__cause__}")
        raise SystemExit(1)
    output.info(f"created namespace-frontend mapping: namespace '{args.namespace_token}' -> frontend '{args.frontend_token}'")


def cmd_admin_delete(args):
    paths = {
        "account": ("/account", "deleteAccount", {"email": getattr(args, "email", None)}),
        "frontend": ("/frontend", "deleteFrontend", {"frontendToken": getattr(args, "frontend_token", None)}),
        "identity": ("/identity", "deleteIdentity", {"zId": getattr(args, "zid", None)}),
    }
    path, operation, body = paths[args.object]
    try:
        _admin_call("DELETE", path, operation, body)
    except _AdminFailure as exc:
        _fail(f"error deleting {args.object}", exc)
    output.info(f"deleted {args.object}")


def cmd_admin_list_frontends(args):
    try:
        frontends = _admin_call("GET", "/frontends", "listFrontends")
    except _AdminFailure as exc:
        _fail("error listing frontends", exc)
    if args.extra:
        header = ["Frontend Token", "zId", "Public Name", "Url Template", "Permission Mode", "Dynamic", "Created At", "Updated At"]
        rows = [
            [f["frontendToken"], f["zId"], f["publicName"], f["urlTemplate"], f["permissionMode"], f["dynamic"], output.unix_to_text(f["createdAt"] // 1000), output.unix_to_text(f["updatedAt"] // 1000)]
            for f in frontends
        ]
    else:
        header = ["Frontend Token", "zId", "Public Name", "Permission Mode", "Dynamic", "Updated At"]
        rows = [
            [f["frontendToken"], f["zId"], f["publicName"], f["permissionMode"], f["dynamic"], output.unix_to_text(f["updatedAt"] // 1000)]
            for f in frontends
        ]
    print()
    print(output.render_table(header, rows))
    print()


def cmd_admin_list_namespaces(args):
    try:
        namespaces = _admin_call("GET", "/namespaces", "listNamespaces")
    except _AdminFailure as exc:
        _fail("error listing namespaces", exc)
    rows = [
        [n["namespaceToken"], n["name"], n["description"], n["open"], output.unix_to_text(n["createdAt"]), output.unix_to_text(n["updatedAt"])]
        for n in namespaces
    ]
    print()
    print(output.render_table(["Namespace Token", "Namespace", "Description", "Open", "Created At", "Updated At"], rows))
    print()


def cmd_admin_list_namespace_frontend(args):
    try:
        frontends = {f["frontendToken"]: f for f in _admin_call("GET", "/frontends", "listFrontends")}
        mappings = _admin_call("GET", f"/namespace/frontend/mapping/{args.namespace_token}", "listNamespaceFrontendMappings")
    except _AdminFailure as exc:
        output.error(f"error listing namespace-frontend mappings: {exc.__cause__}")
        raise SystemExit(1)
    if not mappings:
        print(f"no frontend mappings found for namespace '{args.namespace_token}'")
        return
    rows = []
    for mapping in mappings:
        frontend = frontends.get(mapping["frontendToken"])
        if frontend:
            rows.append([mapping["frontendToken"], frontend["publicName"], frontend["urlTemplate"], mapping["isDefault"], output.unix_to_text(frontend["createdAt"] // 1000)])
        else:
            rows.append([mapping["frontendToken"], "[unknown]", "", mapping["isDefault"], ""])
    print()
    print(output.render_table(["frontend token", "public name", "url template", "default", "created"], rows))
    print()


def cmd_admin_update_frontend(args):
    try:
        _admin_call("PATCH", "/frontend", "updateFrontend", {"frontendToken": args.frontend_token, "dynamic": args.dynamic})
    except _AdminFailure as exc:
        _fail("error updating frontend", exc)
    output.info(f"updated frontend '{args.frontend_token}'")


# --- servers -------------------------------------------------------------------


def cmd_controller(args):
    from . import controller

    path = args.config_path
    if path == "validate":
        if not args.extra:
            output.tui_error("missing ctrl.yml path for 'zrok2 controller validate'")
        try:
            controller.load_config(args.extra)
        except (controller.ConfigError, ValueError) as exc:
            output.tui_error("invalid controller configuration", exc)
        print(f"controller configuration '{args.extra}' is valid")
        return
    try:
        controller.run(path)
    except (controller.ConfigError, ValueError) as exc:
        _fail("unable to load configuration", exc)


def cmd_access_dynamic_proxy(args):
    from . import frontend

    try:
        frontend.run(args.config_path)
    except (frontend.ConfigError, OSError, ValueError) as exc:
        _fail("unable to start dynamic proxy frontend", exc)


_DISPATCH = {
    ("version",): cmd_version,
    ("config", "set"): cmd_config,
    ("config", "get"): cmd_config,
    ("config", "unset"): cmd_config,
    ("enable",): cmd_enable,
    ("disable",): cmd_disable,
    ("status",): cmd_status,
    ("st",): cmd_status,
    ("create", "name"): cmd_create_name,
    ("delete", "share"): cmd_delete_share,
    ("delete", "name"): cmd_delete_name,
    ("list", "shares"): cmd_list_shares,
    ("list", "names"): cmd_list_names,
    ("list", "environments"): cmd_list_environments,
    ("list", "namespaces"): cmd_list_namespaces,
    ("overview",): cmd_overview,
    ("share", "public"): cmd_share_public,
    ("admin", "bootstrap"): cmd_admin_bootstrap,
    ("admin", "create", "account"): cmd_admin_create_account,
    ("admin", "create", "frontend"): cmd_admin_create_frontend,
    ("admin", "create", "identity"): cmd_admin_create_identity,
    ("admin", "create", "id"): cmd_admin_create_identity,
    ("admin", "create", "namespace"): cmd_admin_create_namespace,
    ("admin", "create", "namespace-frontend"): cmd_admin_create_namespace_frontend,
    ("admin", "create", "fn"): cmd_admin_create_namespace_frontend,
    ("admin", "delete", "account"): cmd_admin_delete,
    ("admin", "delete", "frontend"): cmd_admin_delete,
    ("admin", "delete", "identity"): cmd_admin_delete,
    ("admin", "list", "frontends"): cmd_admin_list_frontends,
    ("admin", "list", "fes"): cmd_admin_list_frontends,
    ("admin", "list", "namespaces"): cmd_admin_list_namespaces,
    ("admin", "list", "namespace-frontend"): cmd_admin_list_namespace_frontend,
    ("admin", "list", "nf"): cmd_admin_list_namespace_frontend,
    ("admin", "update", "frontend"): cmd_admin_update_frontend,
    ("controller",): cmd_controller,
    ("access", "dynamicProxy"): cmd_access_dynamic_proxy,
}


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    key = tuple(
        value
        for value in (args.verb, getattr(args, "action", None) or getattr(args, "mode", None), getattr(args, "object", None))
        if value
    )
    if args.verb == "ls":
        key = ("list",) + key[1:]
    if args.verb == "admin" and getattr(args, "action", None) == "bootstrap":
        key = ("admin", "bootstrap")
    handler = _DISPATCH.get(key)
    if handler is None:
        if not args.verb:
            parser.print_help()
            return 0
        sys.stderr.write(f"Error: '{' '.join(key)}' is incomplete or not implemented by the zrok2 stand-in\n")
        return 1
    handler(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
