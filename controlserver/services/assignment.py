"""Ranking of frontends for a printer: estimated round trip plus a penalty for load."""

from __future__ import annotations

import functools
import math
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

    Every registration ranks all frontends, so this computes the printer's side of the distance
    once and reuses each frontend's cached side. The arithmetic is the same as in score().
    """
    rtt_of = _rtt_estimator(placement)
    scored = []
    for frontend in frontends:
        if not frontend.assignable or frontend.name in exclude:
            continue
        load = frontend.assigned / frontend.capacity if frontend.capacity else 1.0
        scored.append((rtt_of(frontend) + load_weight_ms * load, frontend.name, frontend))
    scored.sort(key=_score_and_name)
    return [frontend for _score, _name, frontend in scored]


def _score_and_name(entry: tuple[float, str, FrontendState]) -> tuple[float, str]:
    return entry[0], entry[1]


def _rtt_estimator(placement: Placement):
    """Return a function frontend -> estimated round trip in ms, as score() computes it."""
    latency = placement.latency_ms or {}
    if placement.latitude is not None and placement.longitude is not None:
        latitude, longitude = placement.latitude, placement.longitude
        phi1 = math.radians(latitude)
        cos_phi1 = math.cos(phi1)

        def from_coordinates(frontend: FrontendState) -> float:
            measured = latency.get(frontend.name)
            if measured is not None:
                return float(measured)
            phi2, cos_phi2 = _radians_and_cosine(frontend.latitude)
            a = (math.sin((phi2 - phi1) / 2) ** 2
                 + cos_phi1 * cos_phi2 * math.sin(math.radians(frontend.longitude - longitude) / 2) ** 2)
            return estimated_rtt_ms(2 * EARTH_RADIUS_KM * math.asin(math.sqrt(a)))

        return from_coordinates

    def without_coordinates(frontend: FrontendState) -> float:
        measured = latency.get(frontend.name)
        if measured is not None:
            return float(measured)
        if placement.region is not None:
            return 0.0 if placement.region == frontend.region else UNKNOWN_RTT_MS
        return 0.0

    return without_coordinates


@functools.lru_cache(maxsize=4096)
def _radians_and_cosine(latitude: float) -> tuple[float, float]:
    phi = math.radians(latitude)
    return phi, math.cos(phi)
