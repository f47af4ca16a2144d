"""Locations that a stack's `location` key may name, per provider."""

# Hetzner Cloud locations (https://docs.hetzner.cloud/reference/cloud#locations), as of 2026.
HCLOUD_LOCATIONS: dict[str, str] = {
    "fsn1": "Falkenstein, DE",
    "nbg1": "Nuremberg, DE",
    "hel1": "Helsinki, FI",
    "ash": "Ashburn, VA, US",
    "hil": "Hillsboro, OR, US",
    "sin": "Singapore, SG",
}

# AWS commercial regions (https://docs.aws.amazon.com/global-infrastructure/latest/regions/), as of 2026.
AWS_REGIONS: dict[str, str] = {
    "us-east-1": "N. Virginia",
    "us-east-2": "Ohio",
    "us-west-1": "N. California",
    "us-west-2": "Oregon",
    "ca-central-1": "Canada Central",
    "ca-west-1": "Calgary",
    "mx-central-1": "Mexico",
    "sa-east-1": "Sao Paulo",
    "eu-central-1": "Frankfurt",
    "eu-central-2": "Zurich",
    "eu-west-1": "Ireland",
    "eu-west-2": "London",
    "eu-west-3": "Paris",
    "eu-north-1": "Stockholm",
    "eu-south-1": "Milan",
    "eu-south-2": "Spain",
    "af-south-1": "Cape Town",
    "me-south-1": "Bahrain",
    "me-central-1": "UAE",
    "il-central-1": "Tel Aviv",
    "ap-east-1": "Hong Kong",
    "ap-east-2": "Taipei",
    "ap-south-1": "Mumbai",
    "ap-south-2": "Hyderabad",
    "ap-northeast-1": "Tokyo",
    "ap-northeast-2": "Seoul",
    "ap-northeast-3": "Osaka",
    "ap-southeast-1": "Singapore",
    "ap-southeast-2": "Sydney",
    "ap-southeast-3": "Jakarta",
    "ap-southeast-4": "Melbourne",
    "ap-southeast-5": "Malaysia",
    "ap-southeast-6": "New Zealand",
    "ap-southeast-7": "Thailand",
}

LOCATIONS_BY_PROVIDER: dict[str, dict[str, str]] = {
    "hcloud": HCLOUD_LOCATIONS,
    "aws": AWS_REGIONS,
}
