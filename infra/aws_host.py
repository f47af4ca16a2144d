"""AWS resources of one host: security group, EC2 instance, Elastic IP, Route53 records."""

from __future__ import annotations

import re

import pulumi
import pulumi_aws as aws

from infra.hosts import HostOutputs, HostSpec

# The AWS account that publishes Debian's official cloud images (https://wiki.debian.org/Cloud/AmazonEC2Image).
DEBIAN_AMI_OWNER = "136693071363"

# Graviton instance families carry a "g" after the generation digit: t4g, c7g, c7gn, m8g.
_ARM_INSTANCE_TYPE = re.compile(r"^[a-z]+\d+g[a-z]*\.")

ROOT_VOLUME_GIB = 20

FIRST_BOOT_ONLY = ["ami", "key_name", "user_data"]


def debian_architecture(instance_type: str) -> str:
    """Return the Debian architecture name of an instance type: arm64 or amd64."""
    return "arm64" if _ARM_INSTANCE_TYPE.match(instance_type) else "amd64"


def _ingress_rules(spec: HostSpec) -> list[aws.ec2.SecurityGroupIngressArgs]:
    return [
        aws.ec2.SecurityGroupIngressArgs(
            protocol="tcp",
            from_port=rule.port,
            to_port=rule.port,
            cidr_blocks=rule.ipv4_sources,
            ipv6_cidr_blocks=rule.ipv6_sources,
            description=rule.description,
        )
        for rule in spec.ingress
    ]


def create_aws_host(
    parent: pulumi.ComponentResource, name: str, spec: HostSpec
) -> HostOutputs:
    child = pulumi.ResourceOptions(parent=parent)
    tags = {"Name": spec.hostname, **spec.labels}
    region = spec.location

    security_group = aws.ec2.SecurityGroup(
        f"{name}-security-group",
        description=f"{spec.hostname}: public ports and SSH from the admin networks",
        ingress=_ingress_rules(spec),
        egress=[
            aws.ec2.SecurityGroupEgressArgs(
                protocol="-1",
                from_port=0,
                to_port=0,
                cidr_blocks=["0.0.0.0/0"],
                ipv6_cidr_blocks=["::/0"],
                description="All outbound traffic (apt, ACME, zrok)",
            )
        ],
        tags=tags,
        region=region,
        opts=child,
    )

    architecture = debian_architecture(spec.server_type)
    ami = aws.ec2.get_ami_output(
        owners=[DEBIAN_AMI_OWNER],
        most_recent=True,
        filters=[
            aws.ec2.GetAmiFilterArgs(
                name="name", values=[f"debian-12-{architecture}-*"]
            ),
            aws.ec2.GetAmiFilterArgs(
                name="architecture",
                values=["arm64" if architecture == "arm64" else "x86_64"],
            ),
        ],
        region=region,
        opts=pulumi.InvokeOutputOptions(parent=parent),
    )

    # The AMI, key pair and user data act at first boot only. A newer Debian AMI, a new key or new
    # cloud-init must not stop or replace a running host, because Ansible manages it from then on.
    instance = aws.ec2.Instance(
        f"{name}-instance",
        ami=ami.id,
        instance_type=spec.server_type,
        key_name=spec.ssh_key,
        vpc_security_group_ids=[security_group.id],
        user_data=spec.user_data,
        metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
            http_tokens="required", http_endpoint="enabled"
        ),
        root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
            volume_size=ROOT_VOLUME_GIB, volume_type="gp3", encrypted=True
        ),
        tags=tags,
        volume_tags=tags,
        region=region,
        opts=pulumi.ResourceOptions(parent=parent, ignore_changes=FIRST_BOOT_ONLY),
    )

    elastic_ip = aws.ec2.Eip(
        f"{name}-eip",
        domain="vpc",
        instance=instance.id,
        tags=tags,
        region=region,
        opts=child,
    )

    zone = aws.route53.get_zone_output(
        name=spec.dns_zone,
        private_zone=False,
        opts=pulumi.InvokeOutputOptions(parent=parent),
    )

    # NOTE: Route53 records take no tags, so the fleet's tags stop at the Elastic IP.
    # NOTE: the default VPC has no IPv6, so AWS hosts get A records only and export ipv6 as None.
    for dns_name in spec.dns_names:
        aws.route53.Record(
            f"{name}-{dns_name.role}-a",
            zone_id=zone.zone_id,
            name=dns_name.fqdn,
            type="A",
            ttl=spec.dns_ttl,
            records=[elastic_ip.public_ip],
            opts=child,
        )

    return HostOutputs(
        server_id=instance.id,
        ipv4=elastic_ip.public_ip,
        ipv6=pulumi.Output.from_input(None),
    )
