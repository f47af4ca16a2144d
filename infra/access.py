"""AdminSshKey: the operator's SSH key as the provider stores it, shared by every host of a stack."""

from __future__ import annotations

from typing import Optional

import pulumi


class AdminSshKey(pulumi.ComponentResource):
    """Upload the admin public key once per stack, or reference a key that already exists.

    Hetzner rejects a second key with the same fingerprint in one project, so stacks that share
    a Hetzner project set `sshKeyName` to reuse one uploaded key. `reference` is what servers
    take: the hcloud key id or name, or the AWS key pair name.
    """

    reference: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        provider: str,
        public_key: str,
        existing_key_name: Optional[str],
        labels: dict[str, str],
        location: str,
        opts: Optional[pulumi.ResourceOptions] = None,
    ):
        super().__init__("printer-fleet:access:AdminSshKey", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        if existing_key_name:
            self.reference = pulumi.Output.from_input(existing_key_name)
        elif provider == "hcloud":
            import pulumi_hcloud as hcloud

            key = hcloud.SshKey(
                f"{name}-key",
                name=name,
                public_key=public_key,
                labels=labels,
                opts=child,
            )
            self.reference = key.id
        else:
            import pulumi_aws as aws

            key = aws.ec2.KeyPair(
                f"{name}-key",
                key_name=name,
                public_key=public_key,
                tags={"Name": name, **labels},
                region=location,
                opts=child,
            )
            self.reference = key.key_name

        self.register_outputs({"reference": self.reference})
