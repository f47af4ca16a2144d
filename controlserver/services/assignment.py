"""Ranking of frontends for a printer: estimated round trip plus a penalty for load."""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

from controlserver.locations import EARTH_RADIUS_KM, distance_km, estimated_rtt_ms

# Score of a frontend when neither coordinates nor a measured latency tell anything: a region
# hint that matches gets 0, anything else this much, so load alone decides among equals.
UNKNOWN_RTT_MS = 1000.0


@dataclass(frozen=True)
class FrontendState:
    """What ranking needs to know about a frontend."""

    name: str
    region: str
    latitude: float
    longitude: float
    capacity: int
    assigned: int
    healthy: bool
    draining: bool
    in_inventory: bool
    api_endpoint: str
    share_domain: str = ""

    @property
    def assignable(self) -> bool:
        return self.in_inventory and self.healthy and not self.draining and self.assigned < self.capacity


@dataclass(frozen=True)
class Placement:
    """What the printer tells about where it is."""

    latitude: float | None = None
    longitude: float | None = None
    region: str | None = None
    latency_ms: dict[str, float] | None = None


def score(frontend: FrontendState, placement: Placement, load_weight_ms: float) -> float:
    """Estimate the round trip in ms to `frontend`, plus load_weight_ms times its load fraction."""
    latency = (placement.latency_ms or {}).get(frontend.name)
    if latency is not None:
        rtt = float(latency)
    elif placement.latitude is not None and placement.longitude is not None:
        km = distance_km(placement.latitude, placement.longitude, frontend.latitude, frontend.longitude)
        rtt = estimated_rtt_ms(km)
    elif placement.region is not None:
        rtt = 0.0 if placement.region == frontend.region else UNKNOWN_RTT_MS
    else:
        rtt = 0.0

    load = frontend.assigned / frontend.capacity if frontend.capacity else 1.0
    return rtt + load_weight_ms * load


def rank(
    frontends: list[FrontendState],
    placement: Placement,
    load_weight_ms: float,
    exclude: frozenset[str] = frozenset(),
) -> list[FrontendState]:
    """Return the assignable frontends, best first by score(). Ties go to the name for a stable order.

    Every registration ranks all frontends, so this is score() inlined into one loop, with the
    printer's side of the distance computed once. The arithmetic and its order are the same as in
    score(), distance_km() and estimated_rtt_ms(), so the results are equal to the last bit.
    """
    latency = placement.latency_ms
    by_coordinates = placement.latitude is not None and placement.longitude is not None
    if by_coordinates:
        phi1 = math.radians(placement.latitude)
        cos_phi1 = math.cos(phi1)
        longitude1 = placement.longitude
    scored = []
    for frontend in frontends:
        if not frontend.assignable or frontend.name in exclude:
            continue
        measured = latency.get(frontend.name) if latency else None
        if measured is not None:
            rtt = float(measured)
        elif by_coordinates:
            phi2 = math.radians(frontend.latitude)
            a = (math.sin((phi2 - phi1) / 2) ** 2
                 + cos_phi1 * math.cos(phi2) * math.sin(math.radians(frontend.longitude - longitude1) / 2) ** 2)
            km = 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))
            rtt = km * 1.5 / 100.0 + 5.0
        elif placement.region is not None:
            rtt = 0.0 if placement.region == frontend.region else UNKNOWN_RTT_MS
        else:
            rtt = 0.0
        load = frontend.assigned / frontend.capacity if frontend.capacity else 1.0
        scored.append((rtt + load_weight_ms * load, frontend.name, frontend))
    scored.sort(key=_SCORE_AND_NAME)
    return [frontend for _score, _name, frontend in scored]


_SCORE_AND_NAME = operator.itemgetter(0, 1)
