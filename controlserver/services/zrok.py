"""Printer accounts on zrok instances, created through the zrok v2 admin API (package zrok_api)."""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

import urllib3
from zrok_api.api.admin_api import AdminApi
from zrok_api.api_client import ApiClient
from zrok_api.configuration import Configuration
from zrok_api.exceptions import ApiException
from zrok_api.models.login_request import LoginRequest

from controlserver.core.security import new_password
from controlserver.core.tls import client_ssl_context
from controlserver.errors import ZrokAccountFailed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CreatedAccount:
    email: str
    account_token: str


class ZrokAdmin:
    """Create zrok accounts with each frontend's admin secret; one HTTP connection pool per frontend."""

    def __init__(
        self,
        admin_secrets: dict[str, str],
        *,
        email_domain: str,
        ca_file: Path | None,
        timeout_s: float,
    ) -> None:
        self._admin_secrets = dict(admin_secrets)
        self._email_domain = email_domain
        self._ssl_context = client_ssl_context(ca_file)
        self._timeout_s = timeout_s
        self._clients: dict[tuple[str, str], AdminApi] = {}
        self._lock = threading.Lock()

    def set_admin_secrets(self, admin_secrets: dict[str, str]) -> None:
        with self._lock:
            self._admin_secrets = dict(admin_secrets)
            self._clients.clear()

    def has_admin_secret(self, frontend: str) -> bool:
        return frontend in self._admin_secrets

    def email_for(self, printer_id: str) -> str:
        """Return a fresh e-mail for an account made for one printer, `<printer_id>-<random>@<domain>`.

        The random part keeps a retried registration from colliding with an account that an
        earlier attempt created but never stored, because the server was killed in between.
        zrok cannot hand out the token of an existing account, so a fixed e-mail would fail
        every retry.
        """
        return f"{printer_id}-{secrets.token_hex(4)}@{self._email_domain}"

    def pool_email(self) -> str:
        """Return a fresh e-mail for an account made ahead of demand."""
        return f"pool-{secrets.token_hex(8)}@{self._email_domain}"

    def create_account(self, frontend: str, api_endpoint: str, email: str) -> CreatedAccount:
        """Create an account on `frontend` and return its token.

        Raises ZrokAccountFailed, with a message free of secrets, when the admin API fails.
        """
        admin = self._client(frontend, api_endpoint)
        try:
            response = admin.create_account(
                LoginRequest(email=email, password=new_password()), _request_timeout=self._timeout_s
            )
        except ApiException as exc:
            if exc.status == 409:
                # The instance has the account but this server lost its token (e.g. a restored
                # database). The token cannot be read back through the admin API.
                raise ZrokAccountFailed(
                    f"zrok account {email} already exists on frontend {frontend} but its token is not "
                    f"stored here: delete it with `zrok2 admin delete account {email}` on {frontend}, "
                    "then the printer's next registration creates it again"
                ) from None
            if exc.status == 401:
                raise ZrokAccountFailed(
                    f"zrok admin API of frontend {frontend} rejected the admin secret while creating "
                    f"account {email} (HTTP 401): check zrok_admin_secrets in the secrets file"
                ) from None
            # zrok v2 answers 500 for every other failure, an existing e-mail included.
            raise ZrokAccountFailed(
                f"zrok admin API of frontend {frontend} failed to create account {email} "
                f"(HTTP {exc.status}): if the account already exists, delete it with "
                f"`zrok2 admin delete account {email}` on {frontend}; otherwise read the zrok "
                "controller's log there"
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ZrokAccountFailed(
                f"zrok admin API of frontend {frontend} at {api_endpoint} is unreachable "
                f"({type(exc).__name__}): retry later"
            ) from None

        token = response.account_token
        if not token:
            raise ZrokAccountFailed(f"zrok admin API of frontend {frontend} returned no token for account {email}")
        log.debug("zrok account created", extra={"frontend": frontend, "url": email})
        return CreatedAccount(email=email, account_token=token)

    def _client(self, frontend: str, api_endpoint: str) -> AdminApi:
        with self._lock:
            key = (frontend, api_endpoint)
            client = self._clients.get(key)
            if client is not None:
                return client
            secret = self._admin_secrets.get(frontend)
            if secret is None:
                raise ZrokAccountFailed(
                    f"no zrok admin secret for frontend {frontend}: add it under zrok_admin_secrets "
                    "in the secrets file and send SIGHUP"
                )
            configuration = Configuration(host=f"{api_endpoint}/api/v2", api_key={"key": secret})
            api_client = ApiClient(configuration)
            # Replace the generated client's pool so verification uses the system trust store
            # plus the configured CA file (the generated one accepts only one or the other).
            api_client.rest_client.pool_manager = urllib3.PoolManager(
                num_pools=2, maxsize=16, ssl_context=self._ssl_context
            )
            client = AdminApi(api_client)
            self._clients[key] = client
            return client

