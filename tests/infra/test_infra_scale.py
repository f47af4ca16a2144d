"""A synthetic fleet of 50 region stacks evaluated under mocks, with the time it takes printed."""

from __future__ import annotations

import json
import time

from infra.inventory import StackSource, generate
from infra.locations import AWS_REGIONS, HCLOUD_LOCATIONS
from infra_mocks import base_config, run_program

REGION_COUNT = 50
FRONTENDS_PER_REGION = 3


def synthetic_region(index: int) -> tuple[str, dict[str, str]]:
    """Return the stack name and config of region `index`: even indexes on hcloud, odd ones on AWS."""
    region = f"r{index:02d}"
    overrides = {
        "region": region,
        "frontendCount": FRONTENDS_PER_REGION,
        "domain": f"{region}.fleet.example.com",
        "controlServer": index == 0,
    }
    if index % 2 == 0:
        locations = sorted(HCLOUD_LOCATIONS)
        overrides.update(
            provider="hcloud",
            location=locations[index % len(locations)],
            serverType="cx23",
        )
    else:
        regions = sorted(AWS_REGIONS)
        instance_type = "t4g.small" if index % 4 == 1 else "t3.small"
        overrides.update(
            provider="aws",
            location=regions[index % len(regions)],
            serverType=instance_type,
        )
    return region, base_config(**overrides)


def test_fifty_regions_evaluate(tmp_path, capsys):
    started = time.perf_counter()
    runs = {}
    for index in range(REGION_COUNT):
        stack, config = synthetic_region(index)
        runs[stack] = run_program(stack, config)
    evaluated = time.perf_counter()

    sources = []
    for stack, (exports, _) in runs.items():
        path = tmp_path / "outputs" / f"{stack}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(exports))
        sources.append(StackSource(stack, path))
    generate(sources, output_dir=tmp_path / "generated")
    rendered = time.perf_counter()

    resource_count = sum(len(mocks.resources) for _, mocks in runs.values())
    with capsys.disabled():
        print(
            f"\n{REGION_COUNT} region stacks, {REGION_COUNT * FRONTENDS_PER_REGION} frontends, "
            f"{resource_count} resources: evaluated under mocks in {evaluated - started:.2f} s, "
            f"inventory rendered in {rendered - evaluated:.2f} s"
        )

    names = [
        frontend["name"]
        for exports, _ in runs.values()
        for frontend in exports["frontends"]
    ]
    assert len(names) == REGION_COUNT * FRONTENDS_PER_REGION
    assert len(set(names)) == len(names)
    assert len(list((tmp_path / "generated").glob("*.yml"))) == REGION_COUNT

    providers = {exports["provider"] for exports, _ in runs.values()}
    assert providers == {"hcloud", "aws"}
    assert "control_server" in runs["r00"][0]

    graviton_calls = [
        args for token, args in runs["r01"][1].calls if token == "aws:ec2/getAmi:getAmi"
    ]
    assert len(graviton_calls) == FRONTENDS_PER_REGION
    assert {"name": "name", "values": ["debian-12-arm64-*"]} in graviton_calls[0][
        "filters"
    ]
