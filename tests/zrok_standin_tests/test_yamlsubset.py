"""The block-YAML subset parser agrees with PyYAML on what the roles write."""

import pytest
import yaml

from tests.zrok_standin import yamlsubset

CTRL_YML = """\
# managed by Ansible
v: 4
admin:
  secrets:
    - "s3cret-with-#-inside"
  tou_link: '<a href="https://example.com">Terms</a>'
endpoint:
  host: 127.0.0.1
  port: 18080
store:
  path: /var/lib/zrok2-controller/zrok.db
  type: sqlite3
  enable_locking: true
ziti:
  api_endpoint: https://127.0.0.1:1280
  username: admin
  password: 'it''s secret'
limits:
  environments: -1
  bandwidth:
    period: 5m
compatibility:
  version_patterns:
  - "^(refs/(heads|tags)/)?v2\\\\.0"
dynamic_proxy_controller:
  identity_path: /var/lib/zrok2-controller/.zrok2/identities/dynamicProxyController.json
  service_name: dynamicProxyController
  amqp_publisher: {url: "amqp://guest:guest@127.0.0.1:5672", exchange_name: dynamicProxy}
"""

ROUTER_YML = """\
v: 3
identity:
  cert: /var/lib/ziti-router/router.cert
listeners:
  - binding: edge
    address: tls:0.0.0.0:3022
    options:
      advertise: lab-eu-1.fleet.test:3022
edge:
  csr:
    sans:
      dns: [lab-eu-1.fleet.test, localhost]
      ip: []
"""


@pytest.mark.parametrize("text", [CTRL_YML, ROUTER_YML], ids=["ctrl.yml", "router.yml"])
def test_subset_matches_pyyaml(text):
    assert yamlsubset.loads(text) == yaml.safe_load(text)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("key: |\n  block\n", "block scalars"),
        ("key: &anchor value\n", "anchors"),
        ("a:\n    b: 1\n   c: 2\n", "indentation"),
        ("key: [a, [b]]\n", "nested flow"),
    ],
)
def test_unsupported_yaml_names_the_line(text, fragment):
    with pytest.raises(yamlsubset.YamlSubsetError) as raised:
        yamlsubset.loads(text)

    assert "line " in str(raised.value)
    assert fragment in str(raised.value)
