"""The stand-in zrok controller (`zrok2 controller <ctrl.yml>`): REST API under /api/v2.

Paths, request bodies, response models and status codes follow the zrok v2
OpenAPI spec as generated into the `zrok_api` client of the PyPI `zrok2`
2.0.8 wheel. Authentication is the `X-TOKEN` header: one of ctrl.yml's
`admin.secrets` for admin calls, an account token for the others.

Besides the public API, the controller binds the `dynamic_proxy_controller`
service on the edge router when ctrl.yml configures it. The frontend looks
up names over that service. The real controller serves the dynamic proxy
frontend over OpenZiti too, but with AMQP updates and gRPC.
"""

import hmac
import json
import re
from http.server import ThreadingHTTPServer

from . import ZROK_VERSION, STANDIN_NOTICE, identity, output, relay, rest, yamlsubset, ziti_client
from .rest import ApiError
from .store import Store, hash_password, now_ms, now_s

DEFAULT_VERSION_PATTERNS = [r"^(refs/(heads|tags)/)?v2\.0"]
_NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class ConfigError(ValueError):
    """Raised when ctrl.yml is missing a required field or has an invalid one."""


def load_config(path):
    """Read ctrl.yml and check the fields the stand-in uses."""
    try:
        cfg = yamlsubset.load_file(path)
    except OSError as exc:
        raise ConfigError(f"cannot read controller config '{path}': {exc}") from exc
    if not isinstance(cfg, dict):
        raise ConfigError(f"controller config '{path}' must be a YAML mapping")
    if cfg.get("v") != 4:
        raise ConfigError(
            f"controller config '{path}' has v: {cfg.get('v')!r}; the zrok v2 controller reads only "
            "'v: 4' configurations: set 'v: 4' and use the v2 keys"
        )
    secrets_list = (cfg.get("admin") or {}).get("secrets") or []
    if not secrets_list or not all(isinstance(s, str) and s for s in secrets_list):
        raise ConfigError(f"controller config '{path}': admin.secrets must list at least one secret")
    store_cfg = cfg.get("store") or {}
    if not store_cfg.get("path"):
        raise ConfigError(f"controller config '{path}': store.path is missing")
    if store_cfg.get("type", "sqlite3") != "sqlite3":
        raise ConfigError(
            f"controller config '{path}': store.type is {store_cfg.get('type')!r}, but the stand-in keeps "
            "its store in a local file; use 'sqlite3' with a file path in the lab"
        )
    endpoint = cfg.get("endpoint") or {}
    cfg["endpoint"] = {"host": endpoint.get("host", "0.0.0.0"), "port": int(endpoint.get("port", 18080))}
    return cfg


class Controller:
    """State and request handling of one stand-in controller."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.store = Store(cfg["store"]["path"])
        self.admin_secrets = [s.encode() for s in cfg["admin"]["secrets"]]
        patterns = (cfg.get("compatibility") or {}).get("version_patterns") or DEFAULT_VERSION_PATTERNS
        self.version_patterns = [re.compile(p) for p in patterns]
        self.version = f"v{ZROK_VERSION} [standin]"
        self.routes = rest.build_routes(self)
        self.httpd = None
        self.binder = None

    # --- lifecycle -------------------------------------------------------

    def serve_forever(self):
        host, port = self.cfg["endpoint"]["host"], self.cfg["endpoint"]["port"]
        controller = self

        class Handler(rest.RequestHandler):
            pass

        Handler.controller = controller
        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        output.info(f"{STANDIN_NOTICE}: controller {self.version} listening on {host}:{port}")
        self._bind_dynamic_proxy_controller()
        try:
            self.httpd.serve_forever()
        finally:
            if self.binder:
                self.binder.stop()
            self.httpd.server_close()

    def shutdown(self):
        if self.httpd:
            self.httpd.shutdown()

    def _bind_dynamic_proxy_controller(self):
        dpc = self.cfg.get("dynamic_proxy_controller")
        if not dpc:
            output.info("dynamic_proxy_controller is not configured; dynamic frontends cannot look up names")
            return
        service = dpc.get("service_name") or "dynamicProxyController"
        try:
            doc = identity.load(dpc["identity_path"])
        except (KeyError, OSError, ValueError) as exc:
            output.error(f"cannot load dynamic_proxy_controller.identity_path: {exc}; dynamic frontends cannot look up names")
            return
        router = identity.router_address(doc)

        def serve(sock):
            # Connections dialed through the router reach the same HTTP handler,
            # marked so that only they may use the frontend lookup path.
            self.httpd.process_request(sock, ("ziti", service))

        self.binder = relay.Binder(router, service, serve).start()
        output.info(f"binding service '{service}' on edge router {router[0]}:{router[1]}")

    # --- authentication ----------------------------------------------------

    def is_admin(self, token):
        if not token:
            return False
        return any(hmac.compare_digest(token.encode(), secret) for secret in self.admin_secrets)

    def require_admin(self, request):
        if not self.is_admin(request.token):
            raise ApiError(401)

    def require_account(self, data, request):
        if request.token:
            for account in data["accounts"]:
                if hmac.compare_digest(account["token"].encode(), request.token.encode()):
                    return account
        raise ApiError(401)

    # --- metadata ----------------------------------------------------------

    def versions(self, data, request):
        return 200, {"controllerVersion": self.version}

    def version_text(self, data, request):
        return 200, self.version

    def client_version_check(self, data, request):
        client_version = (request.body or {}).get("clientVersion", "")
        if any(p.match(client_version) for p in self.version_patterns):
            return 200, None
        return 400, (
            f"client version '{client_version}' does not match any accepted patterns; "
            "please visit 'https://docs.zrok.io/docs/guides/install/' for the latest release!"
        )

    def configuration(self, data, request):
        admin = self.cfg.get("admin") or {}
        invites = self.cfg.get("invites") or {}
        return 200, {
            "version": self.version,
            "touLink": admin.get("tou_link", ""),
            "newAccountLink": admin.get("new_account_link", ""),
            "invitesOpen": bool(invites.get("invites_open", False)),
            "requiresInviteToken": False,
            "inviteTokenContact": invites.get("token_contact", ""),
        }

    # --- admin: accounts ---------------------------------------------------

    def create_account(self, data, request):
        self.require_admin(request)
        email = (request.body or {}).get("email") or ""
        password = (request.body or {}).get("password") or ""
        if not email or not password:
            raise ApiError(500)
        if any(a["email"] == email for a in data["accounts"]):
            output.error(f"error creating account: account '{email}' already exists")
            raise ApiError(500)
        account = {
            "id": max([a["id"] for a in data["accounts"]] or [0]) + 1,
            "email": email,
            "password": hash_password(password),
            "token": output.new_token(),
            "created_at": now_ms(),
        }
        data["accounts"].append(account)
        output.info(f"created account '{email}'")
        return 201, {"accountToken": account["token"]}

    def delete_account(self, data, request):
        self.require_admin(request)
        email = (request.body or {}).get("email")
        account = _find(data["accounts"], email=email)
        if account is None:
            raise ApiError(404)
        for env in [e for e in data["environments"] if e["account_id"] == account["id"]]:
            self._remove_environment(data, env)
        data["names"] = [n for n in data["names"] if n["account_id"] != account["id"]]
        data["accounts"].remove(account)
        output.info(f"deleted account '{email}'")
        return 200, None

    def update_account_password(self, data, request):
        self.require_admin(request)
        account = _find(data["accounts"], email=(request.body or {}).get("email"))
        if account is None:
            raise ApiError(404)
        account["password"] = hash_password((request.body or {}).get("password") or "")
        return 200, None

    # --- admin: frontends, identities, namespaces --------------------------

    def create_frontend(self, data, request):
        self.require_admin(request)
        body = request.body or {}
        public_name = body.get("public_name") or ""
        if public_name and _find(data["frontends"], public_name=public_name):
            output.error(f"frontend with public name '{public_name}' already exists")
            raise ApiError(400)
        if not _find(data["identities"], zid=body.get("zId")):
            output.error(f"no identity with ziti id '{body.get('zId')}'")
            raise ApiError(404)
        frontend = {
            "token": output.new_token(),
            "zid": body.get("zId"),
            "public_name": public_name,
            "url_template": body.get("url_template") or "",
            "permission_mode": body.get("permissionMode") or "open",
            "dynamic": bool(body.get("dynamic")),
            "created_at": now_ms(),
            "updated_at": now_ms(),
        }
        data["frontends"].append(frontend)
        return 201, {"frontendToken": frontend["token"]}

    def list_frontends(self, data, request):
        self.require_admin(request)
        return 200, [_frontend_model(f) for f in data["frontends"]]

    def update_frontend(self, data, request):
        self.require_admin(request)
        body = request.body or {}
        frontend = _find(data["frontends"], token=body.get("frontendToken"))
        if frontend is None:
            raise ApiError(404)
        if "dynamic" in body:
            frontend["dynamic"] = bool(body["dynamic"])
        if body.get("publicName"):
            frontend["public_name"] = body["publicName"]
        if body.get("urlTemplate"):
            frontend["url_template"] = body["urlTemplate"]
        frontend["updated_at"] = now_ms()
        return 200, None

    def delete_frontend(self, data, request):
        self.require_admin(request)
        frontend = _find(data["frontends"], token=(request.body or {}).get("frontendToken"))
        if frontend is None:
            raise ApiError(404)
        data["frontends"].remove(frontend)
        data["namespace_frontends"] = [m for m in data["namespace_frontends"] if m["frontend_token"] != frontend["token"]]
        return 200, None

    def create_identity(self, data, request):
        self.require_admin(request)
        name = (request.body or {}).get("name") or ""
        if not name:
            raise ApiError(500)
        zid, cfg = self.new_identity(data, name)
        return 201, {"identity": zid, "cfg": cfg}

    def new_identity(self, data, name):
        """Record a new identity called `name` and return its ziti id and identity JSON text."""
        zid = output.new_token(10)
        ziti_cfg = self.cfg.get("ziti") or {}
        if ziti_cfg.get("api_endpoint"):
            # Like the real controller, create the identity on the OpenZiti controller too,
            # so `ziti edge list identities 'name="public"'` finds it.
            try:
                client = ziti_client.ManagementClient(ziti_cfg["api_endpoint"])
                client.login(str(ziti_cfg.get("username", "")), str(ziti_cfg.get("password", "")))
                zid = client.ensure_identity(zid, name)
            except ziti_client.ZitiError as exc:
                output.error(f"error creating ziti identity '{name}': {exc}")
                raise ApiError(500) from exc
        data["identities"].append({"zid": zid, "name": name, "created_at": now_ms()})
        return zid, json.dumps(identity.document(zid, name, ziti_cfg.get("api_endpoint", "")))

    def delete_identity(self, data, request):
        self.require_admin(request)
        record = _find(data["identities"], zid=(request.body or {}).get("zId"))
        if record is None:
            raise ApiError(404)
        data["identities"].remove(record)
        return 200, None

    def create_namespace(self, data, request):
        self.require_admin(request)
        body = request.body or {}
        name = body.get("name") or ""
        token = body.get("token") or output.new_token()
        if not name:
            raise ApiError(500)
        if _find(data["namespaces"], token=token) or _find(data["namespaces"], name=name):
            output.error(f"namespace '{name}' or token '{token}' already exists")
            raise ApiError(409)
        data["namespaces"].append(
            {
                "token": token,
                "name": name,
                "description": body.get("description") or "",
                "open": bool(body.get("open")),
                "created_at": now_s(),
                "updated_at": now_s(),
            }
        )
        return 201, {"namespaceToken": token}

    def list_namespaces(self, data, request):
        self.require_admin(request)
        return 200, [
            {
                "namespaceToken": ns["token"],
                "name": ns["name"],
                "description": ns["description"],
                "open": ns["open"],
                "createdAt": ns["created_at"],
                "updatedAt": ns["updated_at"],
            }
            for ns in data["namespaces"]
        ]

    def delete_namespace(self, data, request):
        self.require_admin(request)
        ns = _find(data["namespaces"], token=(request.body or {}).get("namespaceToken"))
        if ns is None:
            raise ApiError(404)
        data["namespaces"].remove(ns)
        data["namespace_frontends"] = [m for m in data["namespace_frontends"] if m["namespace_token"] != ns["token"]]
        return 200, None

    def add_namespace_frontend_mapping(self, data, request):
        self.require_admin(request)
        body = request.body or {}
        ns_token, fe_token = body.get("namespaceToken"), body.get("frontendToken")
        if not _find(data["namespaces"], token=ns_token) or not _find(data["frontends"], token=fe_token):
            raise ApiError(404)
        existing = _find(data["namespace_frontends"], namespace_token=ns_token, frontend_token=fe_token)
        if existing:
            existing["is_default"] = bool(body.get("isDefault"))
        else:
            data["namespace_frontends"].append(
                {
                    "namespace_token": ns_token,
                    "frontend_token": fe_token,
                    "is_default": bool(body.get("isDefault")),
                    "created_at": now_ms(),
                }
            )
        return 200, None

    def remove_namespace_frontend_mapping(self, data, request):
        self.require_admin(request)
        body = request.body or {}
        existing = _find(
            data["namespace_frontends"], namespace_token=body.get("namespaceToken"), frontend_token=body.get("frontendToken")
        )
        if existing is None:
            raise ApiError(404)
        data["namespace_frontends"].remove(existing)
        return 200, None

    def list_namespace_frontend_mappings(self, data, request, namespaceToken):
        self.require_admin(request)
        if not _find(data["namespaces"], token=namespaceToken):
            raise ApiError(404)
        return 200, [_mapping_model(m) for m in data["namespace_frontends"] if m["namespace_token"] == namespaceToken]

    def list_frontend_namespace_mappings(self, data, request, frontendToken):
        self.require_admin(request)
        if not _find(data["frontends"], token=frontendToken):
            raise ApiError(404)
        return 200, [_mapping_model(m) for m in data["namespace_frontends"] if m["frontend_token"] == frontendToken]

    def get_name(self, data, request, namespaceToken, name):
        self.require_admin(request)
        ns = _find(data["namespaces"], token=namespaceToken)
        record = ns and _find(data["names"], namespace_token=namespaceToken, name=name)
        if not record:
            raise ApiError(404)
        account = _find(data["accounts"], id=record["account_id"]) or {}
        share = self._share_for_name(data, namespaceToken, name)
        return 200, {
            "namespaceToken": namespaceToken,
            "namespaceName": ns["name"],
            "name": name,
            "accountEmail": account.get("email", ""),
            "shareToken": share["token"] if share else "",
            "reserved": record["reserved"],
            "createdAt": record["created_at"],
        }

    # --- environments --------------------------------------------------------

    def enable(self, data, request):
        account = self.require_account(data, request)
        body = request.body or {}
        zid, cfg = self.new_identity(data, f"{account['email']}-{output.new_token(6)}")
        data["environments"].append(
            {
                "zid": zid,
                "account_id": account["id"],
                "description": body.get("description") or "",
                "host": body.get("host") or "",
                "address": request.client_address,
                "created_at": now_ms(),
                "updated_at": now_ms(),
            }
        )
        output.info(f"enabled environment '{zid}' for '{account['email']}'")
        return 201, {"identity": zid, "cfg": cfg}

    def disable(self, data, request):
        account = self.require_account(data, request)
        env = _find(data["environments"], zid=(request.body or {}).get("identity"), account_id=account["id"])
        if env is None:
            raise ApiError(401)
        self._remove_environment(data, env)
        output.info(f"disabled environment '{env['zid']}' for '{account['email']}'")
        return 200, None

    def _remove_environment(self, data, env):
        data["shares"] = [s for s in data["shares"] if s["env_zid"] != env["zid"]]
        data["identities"] = [i for i in data["identities"] if i["zid"] != env["zid"]]
        data["environments"].remove(env)

    def list_environments(self, data, request):
        account = self.require_account(data, request)
        return 200, {
            "environments": [
                {
                    "envZId": env["zid"],
                    "description": env["description"],
                    "host": env["host"],
                    "address": env["address"],
                    "remoteAgent": False,
                    "shareCount": sum(1 for s in data["shares"] if s["env_zid"] == env["zid"]),
                    "accessCount": 0,
                    "limited": False,
                    "createdAt": env["created_at"],
                    "updatedAt": env["updated_at"],
                }
                for env in data["environments"]
                if env["account_id"] == account["id"]
            ]
        }

    # --- names ---------------------------------------------------------------

    def create_share_name(self, data, request):
        account = self.require_account(data, request)
        body = request.body or {}
        ns = _find(data["namespaces"], token=body.get("namespaceToken"))
        name = body.get("name") or ""
        if ns is None:
            raise ApiError(404)
        if not ns["open"]:
            raise ApiError(401)
        if _find(data["names"], namespace_token=ns["token"], name=name):
            output.error(f"name '{name}' already exists in namespace '{ns['token']}'")
            raise ApiError(409)
        if not _NAME_PATTERN.match(name):
            raise ApiError(409, f"'{name}' is not a valid share name; failed profanity or DNS check")
        data["names"].append(
            {
                "namespace_token": ns["token"],
                "name": name,
                "account_id": account["id"],
                "reserved": True,
                "created_at": now_s(),
            }
        )
        output.info(f"created name '{name}' in namespace '{ns['token']}' for '{account['email']}'")
        return 201, None

    def delete_share_name(self, data, request):
        account = self.require_account(data, request)
        body = request.body or {}
        record = _find(data["names"], namespace_token=body.get("namespaceToken"), name=body.get("name"), account_id=account["id"])
        if record is None:
            raise ApiError(404)
        if self._share_for_name(data, record["namespace_token"], record["name"]):
            raise ApiError(409, f"name '{record['name']}' is in use by a share; delete the share first")
        data["names"].remove(record)
        return 200, None

    def list_all_names(self, data, request):
        account = self.require_account(data, request)
        return 200, self._names_for(data, account)

    def list_names_for_namespace(self, data, request, namespaceToken):
        account = self.require_account(data, request)
        if not _find(data["namespaces"], token=namespaceToken):
            raise ApiError(404)
        return 200, [n for n in self._names_for(data, account) if n["namespaceToken"] == namespaceToken]

    def list_share_namespaces(self, data, request):
        self.require_account(data, request)
        return 200, [
            {"namespaceToken": ns["token"], "name": ns["name"], "description": ns["description"]}
            for ns in data["namespaces"]
            if ns["open"]
        ]

    def _names_for(self, data, account):
        result = []
        for record in data["names"]:
            if record["account_id"] != account["id"]:
                continue
            ns = _find(data["namespaces"], token=record["namespace_token"]) or {}
            share = self._share_for_name(data, record["namespace_token"], record["name"])
            result.append(
                {
                    "namespaceToken": record["namespace_token"],
                    "namespaceName": ns.get("name", ""),
                    "name": record["name"],
                    "shareToken": share["token"] if share else "",
                    "reserved": record["reserved"],
                    "createdAt": record["created_at"],
                }
            )
        return result

    @staticmethod
    def _share_for_name(data, namespace_token, name):
        for share in data["shares"]:
            if [namespace_token, name] in share["names"]:
                return share
        return None

    # --- shares --------------------------------------------------------------

    def share(self, data, request):
        account = self.require_account(data, request)
        body = request.body or {}
        env = _find(data["environments"], zid=body.get("envZId"), account_id=account["id"])
        if env is None:
            output.error(f"environment '{body.get('envZId')}' not found for account '{account['email']}'")
            raise ApiError(401)
        if body.get("shareMode") != "public":
            raise ApiError(500, f"the stand-in supports only public shares, not '{body.get('shareMode')}'")

        token = output.new_token()
        names, endpoints = self._select_names(data, account, body.get("nameSelections") or [], token)

        auth_scheme = body.get("authScheme") or "none"
        users = [
            {"username": u.get("username", ""), "password": u.get("password", "")}
            for u in body.get("basicAuthUsers") or []
        ]
        if auth_scheme == "basic" and not users:
            raise ApiError(422)
        if auth_scheme == "oauth":
            raise ApiError(500, "the stand-in does not support OAuth shares")

        data["shares"].append(
            {
                "token": token,
                "zid": output.new_token(10),
                "env_zid": env["zid"],
                "share_mode": "public",
                "backend_mode": body.get("backendMode") or "proxy",
                "target": body.get("target") or "",
                "auth_scheme": auth_scheme,
                "basic_auth_users": users,
                "permission_mode": body.get("permissionMode") or "closed",
                "frontend_endpoints": endpoints,
                "names": names,
                "created_at": now_ms(),
                "updated_at": now_ms(),
            }
        )
        output.info(f"recorded share '{token}' for '{account['email']}'")
        return 201, {"frontendProxyEndpoints": endpoints, "shareToken": token}

    def _select_names(self, data, account, selections, token):
        names, endpoints = [], []
        for selection in selections:
            ns = _find(data["namespaces"], token=selection.get("namespaceToken"))
            if ns is None:
                raise ApiError(409, f"error finding namespace with token '{selection.get('namespaceToken')}'")
            name = selection.get("name") or ""
            if name:
                record = _find(data["names"], namespace_token=ns["token"], name=name)
                if record is None:
                    raise ApiError(409, f"error finding name '{name}' in namespace '{ns['token']}'")
                if record["account_id"] != account["id"]:
                    raise ApiError(
                        409, f"user '{account['email']}' does not own name '{name}' in namespace '{ns['token']}'"
                    )
                if self._share_for_name(data, ns["token"], name):
                    raise ApiError(409, f"name '{name}' in namespace '{ns['token']}' is already in use by another share")
            else:
                if not ns["open"]:
                    raise ApiError(409, f"account '{account['email']}' is not granted access to namespace '{ns['token']}'")
                name = token
                data["names"].append(
                    {
                        "namespace_token": ns["token"],
                        "name": name,
                        "account_id": account["id"],
                        "reserved": False,
                        "created_at": now_s(),
                    }
                )
            names.append([ns["token"], name])
            endpoints.append(f"{name}.{ns['name']}")
        return names, endpoints

    def unshare(self, data, request):
        account = self.require_account(data, request)
        body = request.body or {}
        env = _find(data["environments"], zid=body.get("envZId"), account_id=account["id"])
        share = _find(data["shares"], token=body.get("shareToken"))
        if env is None or share is None or share["env_zid"] != env["zid"]:
            raise ApiError(404)
        data["shares"].remove(share)
        # Names allocated for this share alone (reserved=false) go with it.
        data["names"] = [
            n for n in data["names"] if n["reserved"] or [n["namespace_token"], n["name"]] not in share["names"]
        ]
        output.info(f"deleted share '{share['token']}' for '{account['email']}'")
        return 200, None

    def list_shares(self, data, request):
        account = self.require_account(data, request)
        env_ids = {e["zid"] for e in data["environments"] if e["account_id"] == account["id"]}
        query = request.query
        shares = [s for s in data["shares"] if s["env_zid"] in env_ids]
        if query.get("envZId"):
            shares = [s for s in shares if s["env_zid"] == query["envZId"]]
        if query.get("shareToken"):
            shares = [s for s in shares if query["shareToken"] in s["token"]]
        if query.get("target"):
            shares = [s for s in shares if query["target"] in s["target"]]
        if query.get("shareMode"):
            shares = [s for s in shares if s["share_mode"] == query["shareMode"]]
        if query.get("backendMode"):
            shares = [s for s in shares if s["backend_mode"] == query["backendMode"]]
        return 200, {"shares": [_share_summary(s) for s in shares]}

    def share_detail(self, data, request, shareToken):
        account = self.require_account(data, request)
        env_ids = {e["zid"] for e in data["environments"] if e["account_id"] == account["id"]}
        share = _find(data["shares"], token=shareToken)
        if share is None or share["env_zid"] not in env_ids:
            raise ApiError(404)
        return 200, dict(_share_summary(share), activity=[])

    def overview(self, data, request):
        account = self.require_account(data, request)
        environments = []
        for env in data["environments"]:
            if env["account_id"] != account["id"]:
                continue
            environments.append(
                {
                    "environment": {
                        "description": env["description"],
                        "host": env["host"],
                        "address": env["address"],
                        "zId": env["zid"],
                        "remoteAgent": False,
                        "activity": [],
                        "limited": False,
                        "createdAt": env["created_at"],
                        "updatedAt": env["updated_at"],
                    },
                    "frontends": [],
                    "shares": [
                        dict(_share_summary(s), activity=[]) for s in data["shares"] if s["env_zid"] == env["zid"]
                    ],
                }
            )
        _, namespaces = self.list_share_namespaces(data, request)
        return 200, {
            "accountLimited": False,
            "environments": environments,
            "namespaces": namespaces,
            "names": self._names_for(data, account),
        }

    # --- dynamic proxy frontend lookups (only over the router) ------------

    def frontend_lookup(self, data, request):
        """Return the share and auth settings behind `host` for the frontend `frontend`."""
        if request.client_address != "ziti":
            raise ApiError(404)
        host = request.query.get("host", "").lower()
        frontend_token = request.query.get("frontend", "")
        if not _find(data["frontends"], token=frontend_token):
            raise ApiError(401, f"unknown frontend token")
        for mapping in data["namespace_frontends"]:
            if mapping["frontend_token"] != frontend_token:
                continue
            ns = _find(data["namespaces"], token=mapping["namespace_token"])
            suffix = "." + ns["name"].lower()
            if not host.endswith(suffix):
                continue
            name = host[: -len(suffix)]
            share = self._share_for_name(data, ns["token"], name)
            if share:
                return 200, {
                    "shareToken": share["token"],
                    "authScheme": share["auth_scheme"],
                    "basicAuthUsers": share["basic_auth_users"],
                }
        raise ApiError(404)

    def health(self, data, request):
        return 200, "<html><body><h1>Healthy</h1></body></html>"


def _find(records, **criteria):
    for record in records:
        if all(record.get(key) == value for key, value in criteria.items()):
            return record
    return None


def _frontend_model(frontend):
    return {
        "frontendToken": frontend["token"],
        "zId": frontend["zid"],
        "urlTemplate": frontend["url_template"],
        "publicName": frontend["public_name"],
        "permissionMode": frontend["permission_mode"],
        "dynamic": frontend["dynamic"],
        "createdAt": frontend["created_at"],
        "updatedAt": frontend["updated_at"],
    }


def _mapping_model(mapping):
    return {
        "namespaceToken": mapping["namespace_token"],
        "frontendToken": mapping["frontend_token"],
        "isDefault": mapping["is_default"],
        "createdAt": mapping["created_at"],
    }


def _share_summary(share):
    return {
        "shareToken": share["token"],
        "zId": share["zid"],
        "envZId": share["env_zid"],
        "shareMode": share["share_mode"],
        "backendMode": share["backend_mode"],
        "frontendEndpoints": share["frontend_endpoints"],
        "target": share["target"],
        "limited": False,
        "createdAt": share["created_at"],
        "updatedAt": share["updated_at"],
    }


def run(config_path):
    """Run the controller described by `config_path` until SIGTERM or SIGINT."""
    cfg = load_config(config_path)
    controller = Controller(cfg)
    controller.serve_forever()
