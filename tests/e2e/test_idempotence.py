"""A second run of every playbook on the configured lab changes nothing."""

import pytest

from tests.lab import deploy

pytestmark = pytest.mark.lab


@pytest.mark.parametrize("playbook", [deploy.FRONTENDS_PLAYBOOK, deploy.CONTROL_PLAYBOOK, deploy.PRINTERS_PLAYBOOK])
def test_second_run_changes_nothing(lab, playbook):
    result = deploy.run_playbook(playbook, quiet_progress=True)

    assert result.ok, f"{playbook} failed on {result.failed_hosts} ({result.status})"
    changed = {host: count for host, count in result.changed.items() if count}
    assert changed == {}, f"{playbook} changed tasks on a second run: {changed}"
