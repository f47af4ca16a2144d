"""The stand-in controller checked through the generated zrok2 REST client (`zrok_api`)."""

import pytest
import zrok_api
import zrok_api.configuration
from zrok_api.exceptions import ApiException
from zrok_api.models import (
    CreateShareNameRequest,
    EnableRequest,
    LoginRequest,
    NameSelection,
    ShareRequest,
    UnshareRequest,
)

from .conftest import ADMIN_SECRET, DOMAIN


def api_client(instance, token):
    configuration = zrok_api.configuration.Configuration(host=f"{instance.api_endpoint}/api/v2")
    configuration.api_key["key"] = token
    return zrok_api.ApiClient(configuration)


def test_version_inventory_returns_controller_version(instance):
    versions = zrok_api.MetadataApi(api_client(instance, "")).version_inventory()

    assert isinstance(versions, zrok_api.models.VersionInventory200Response)
    assert versions.controller_version.startswith("v2.0.")


def test_create_account_returns_token(instance):
    admin = zrok_api.AdminApi(api_client(instance, ADMIN_SECRET))

    created = admin.create_account(body=LoginRequest(email="api-1@fleet.test", password="pw-1"))

    assert isinstance(created, zrok_api.models.RegenerateAccountToken200Response)
    assert len(created.account_token) == 12


def test_create_account_rejects_wrong_admin_secret(instance):
    admin = zrok_api.AdminApi(api_client(instance, "not-the-secret"))

    with pytest.raises(ApiException) as raised:
        admin.create_account(body=LoginRequest(email="api-2@fleet.test", password="pw"))

    assert raised.value.status == 401


def test_admin_lists_frontend_and_namespace(instance):
    admin = zrok_api.AdminApi(api_client(instance, ADMIN_SECRET))

    frontends = admin.list_frontends()
    namespaces = admin.list_namespaces()
    mappings = admin.list_namespace_frontend_mappings("public")

    assert [f.frontend_token for f in frontends] == [instance.frontend_token]
    assert frontends[0].dynamic is True
    assert frontends[0].public_name == "public"
    assert [(n.namespace_token, n.name, n.open) for n in namespaces] == [("public", DOMAIN, True)]
    assert [(m.frontend_token, m.is_default) for m in mappings] == [(instance.frontend_token, True)]


def test_share_lifecycle_through_client(instance):
    admin = zrok_api.AdminApi(api_client(instance, ADMIN_SECRET))
    token = admin.create_account(body=LoginRequest(email="api-3@fleet.test", password="pw")).account_token
    user = api_client(instance, token)

    env = zrok_api.EnvironmentApi(user).enable(body=EnableRequest(description="api test", host="test-host"))
    zrok_api.ShareApi(user).create_share_name(body=CreateShareNameRequest(namespace_token="public", name="api-share-3"))
    request = ShareRequest(
        env_zid=env.identity,
        share_mode="public",
        backend_mode="proxy",
        target="http://127.0.0.1:7125",
        name_selections=[NameSelection(namespace_token="public", name="api-share-3")],
        auth_scheme="none",
    )
    share = zrok_api.ShareApi(user).share(body=request)
    listed = zrok_api.MetadataApi(user).list_shares()
    names = zrok_api.ShareApi(user).list_all_names()
    with pytest.raises(ApiException) as conflict:
        zrok_api.ShareApi(user).share(body=request)
    zrok_api.ShareApi(user).unshare(body=UnshareRequest(env_zid=env.identity, share_token=share.share_token))
    after = zrok_api.MetadataApi(user).list_shares()

    assert env.identity
    assert env.cfg.startswith("{")
    assert share.frontend_proxy_endpoints == [f"api-share-3.{DOMAIN}"]
    assert [s.share_token for s in listed.shares] == [share.share_token]
    assert listed.shares[0].target == "http://127.0.0.1:7125"
    assert [(n.name, n.share_token, n.reserved) for n in names] == [("api-share-3", share.share_token, True)]
    assert conflict.value.status == 409
    assert "already in use by another share" in conflict.value.body
    assert after.shares == []


def test_overview_lists_environment_and_names(instance):
    admin = zrok_api.AdminApi(api_client(instance, ADMIN_SECRET))
    token = admin.create_account(body=LoginRequest(email="api-4@fleet.test", password="pw")).account_token
    user = api_client(instance, token)
    env = zrok_api.EnvironmentApi(user).enable(body=EnableRequest(description="overview test", host="h"))
    zrok_api.ShareApi(user).create_share_name(body=CreateShareNameRequest(namespace_token="public", name="api-share-4"))

    overview = zrok_api.MetadataApi(user).overview()

    assert [e.environment.z_id for e in overview.environments] == [env.identity]
    assert [(n.name, n.namespace_name) for n in overview.names] == [("api-share-4", DOMAIN)]
    assert [n.namespace_token for n in overview.namespaces] == ["public"]


def test_user_calls_reject_unknown_account_token(instance):
    user = api_client(instance, "unknowntoken")

    with pytest.raises(ApiException) as raised:
        zrok_api.EnvironmentApi(user).enable(body=EnableRequest(description="x", host="y"))

    assert raised.value.status == 401
