"""Coordinates of Hetzner Cloud locations and AWS regions, and great-circle distances.

Coordinates are those of the city each location is named after, rounded to 0.1 degree: enough to
rank frontends by distance, not to measure it.
"""

from __future__ import annotations

import math

# name -> (latitude, longitude)
LOCATIONS: dict[str, tuple[float, float]] = {
    # Hetzner Cloud
    "fsn1": (50.5, 12.4),   # Falkenstein
    "nbg1": (49.5, 11.1),   # Nuremberg
    "hel1": (60.2, 24.9),   # Helsinki
    "ash": (39.0, -77.5),   # Ashburn, VA
    "hil": (45.5, -122.9),  # Hillsboro, OR
    "sin": (1.3, 103.8),    # Singapore
    # AWS regions
    "us-east-1": (39.0, -77.5),       # N. Virginia
    "us-east-2": (40.0, -83.0),       # Ohio
    "us-west-1": (37.4, -122.0),      # N. California
    "us-west-2": (45.8, -119.7),      # Oregon
    "ca-central-1": (45.5, -73.6),    # Montreal
    "ca-west-1": (51.0, -114.1),      # Calgary
    "mx-central-1": (20.6, -100.4),   # Queretaro
    "sa-east-1": (-23.5, -46.6),      # Sao Paulo
    "eu-central-1": (50.1, 8.7),      # Frankfurt
    "eu-central-2": (47.4, 8.5),      # Zurich
    "eu-west-1": (53.3, -6.3),        # Dublin
    "eu-west-2": (51.5, -0.1),        # London
    "eu-west-3": (48.9, 2.4),         # Paris
    "eu-north-1": (59.3, 18.1),       # Stockholm
    "eu-south-1": (45.5, 9.2),        # Milan
    "eu-south-2": (41.6, -0.9),       # Aragon
    "il-central-1": (32.1, 34.8),     # Tel Aviv
    "me-south-1": (26.1, 50.6),       # Bahrain
    "me-central-1": (25.2, 55.3),     # UAE
    "af-south-1": (-33.9, 18.4),      # Cape Town
    "ap-east-1": (22.3, 114.2),       # Hong Kong
    "ap-east-2": (25.0, 121.6),       # Taipei
    "ap-south-1": (19.1, 72.9),       # Mumbai
    "ap-south-2": (17.4, 78.5),       # Hyderabad
    "ap-northeast-1": (35.7, 139.7),  # Tokyo
    "ap-northeast-2": (37.6, 127.0),  # Seoul
    "ap-northeast-3": (34.7, 135.5),  # Osaka
    "ap-southeast-1": (1.3, 103.8),   # Singapore
    "ap-southeast-2": (-33.9, 151.2), # Sydney
    "ap-southeast-3": (-6.2, 106.8),  # Jakarta
    "ap-southeast-4": (-37.8, 145.0), # Melbourne
    "ap-southeast-5": (3.1, 101.7),   # Kuala Lumpur
    "ap-southeast-6": (-36.8, 174.8), # Auckland
    "ap-southeast-7": (13.8, 100.5),  # Bangkok
}

EARTH_RADIUS_KM = 6371.0


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance by the haversine formula."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlambda = math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))


def estimated_rtt_ms(km: float) -> float:
    """Estimate a round trip over `km`: light in fibre covers about 100 km per ms of round trip,
    and real routes run longer than the great circle, so add 50 % plus 5 ms of last-mile delay."""
    return km * 1.5 / 100.0 + 5.0
