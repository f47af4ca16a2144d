"""Ranking of frontends for a printer: estimated round trip plus a penalty for load."""

from __future__ import annotations

import heapq
import math
import operator
from collections.abc import Iterable, Iterator, Mapping, Sequence
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

    def with_assigned(self, assigned: int) -> FrontendState:
        """Return a copy with another count of assigned printers (dataclasses.replace() costs more)."""
        copy = object.__new__(FrontendState)
        copy.__dict__.update(self.__dict__, assigned=assigned)
        return copy


@dataclass(frozen=True)
class Site:
    """Frontends at the same coordinates, which share their distance to any printer."""

    latitude: float
    longitude: float
    names: tuple[str, ...]


def sites_of(frontends: Iterable[FrontendState]) -> list[Site]:
    """Group the frontends by coordinates, for best_first()."""
    grouped: dict[tuple[float, float], list[str]] = {}
    for frontend in frontends:
        grouped.setdefault((frontend.latitude, frontend.longitude), []).append(frontend.name)
    return [Site(latitude, longitude, tuple(names)) for (latitude, longitude), names in grouped.items()]


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
    """Return the assignable frontends, best first by score(). Ties go to the name for a stable order."""
    entries = _scored(frontends, placement, load_weight_ms, exclude)
    entries.sort(key=_SCORE_AND_NAME)
    return [frontend for _score, _name, frontend in entries]


def best_first(
    states: Mapping[str, FrontendState],
    placement: Placement,
    load_weight_ms: float,
    exclude: frozenset[str] = frozenset(),
    sites: Sequence[Site] | None = None,
) -> Iterator[FrontendState]:
    """Yield the frontends in rank() order, sorting the others only when the best one is rejected.

    A registration nearly always takes the best frontend, so it needs the minimum, not the order.
    With `sites` (sites_of() of the same frontends) and a printer that gives coordinates but no
    measured latency, the best one is found among the nearest sites only.
    """
    if sites is not None and not placement.latency_ms and placement.latitude is not None \
            and placement.longitude is not None:
        best = _best_of_nearest_sites(states, sites, placement, load_weight_ms, exclude)
        if best is None:
            return
        yield best
        yield from rank(list(states.values()), placement, load_weight_ms, exclude | {best.name})
        return
    entries = _scored(list(states.values()), placement, load_weight_ms, exclude)
    if not entries:
        return
    best_entry = min(entries, key=_SCORE_AND_NAME)
    yield best_entry[2]
    entries.remove(best_entry)
    entries.sort(key=_SCORE_AND_NAME)
    for _score, _name, frontend in entries:
        yield frontend


def _best_of_nearest_sites(
    states: Mapping[str, FrontendState],
    sites: Sequence[Site],
    placement: Placement,
    load_weight_ms: float,
    exclude: frozenset[str],
) -> FrontendState | None:
    """Return the best frontend by (score, name), visiting sites nearest first.

    A frontend's score is its site's round trip plus a load term of 0 or more, so once a site is
    farther than the best score so far, no frontend there or farther can beat it. The arithmetic
    is the same as in _scored(), so the result equals rank()'s first frontend.
    """
    phi1 = math.radians(placement.latitude)
    cos_phi1 = math.cos(phi1)
    longitude1 = placement.longitude
    by_distance = []
    for site in sites:
        by_distance.append((_site_rtt(phi1, cos_phi1, longitude1, site.latitude, site.longitude), site.names))
    by_distance.sort(key=_FIRST)
    best_key: tuple[float, str] | None = None
    best = None
    for rtt, names in by_distance:
        if best_key is not None and rtt > best_key[0]:
            break
        for name in names:
            frontend = states.get(name)
            # FrontendState.assignable, inlined: this loop runs for every registration.
            if (frontend is None or frontend.assigned >= frontend.capacity or not frontend.healthy
                    or frontend.draining or not frontend.in_inventory or name in exclude):
                continue
            load = frontend.assigned / frontend.capacity if frontend.capacity else 1.0
            key = (rtt + load_weight_ms * load, name)
            if best_key is None or key < best_key:
                best_key, best = key, frontend
    return best


def best_few(
    count: int,
    frontends: list[FrontendState],
    placement: Placement,
    load_weight_ms: float,
    exclude: frozenset[str] = frozenset(),
) -> list[FrontendState]:
    """Return the first `count` frontends of rank() order."""
    return [frontend for _score, _name, frontend
            in heapq.nsmallest(count, _scored(frontends, placement, load_weight_ms, exclude), key=_SCORE_AND_NAME)]


def _scored(
    frontends: list[FrontendState],
    placement: Placement,
    load_weight_ms: float,
    exclude: frozenset[str],
) -> list[tuple[float, str, FrontendState]]:
    """Return (score, name, frontend) of every assignable frontend that is not excluded.

    Heartbeats and registrations with measured latencies score all frontends, so this is score()
    inlined into one loop. The printer's side of the distance is computed once, and the distance
    once per site, because frontends at the same coordinates share it. The scores equal score()'s
    to the last bit (see _site_rtt()).
    """
    latency = placement.latency_ms
    by_coordinates = placement.latitude is not None and placement.longitude is not None
    if by_coordinates:
        phi1 = math.radians(placement.latitude)
        cos_phi1 = math.cos(phi1)
        longitude1 = placement.longitude
    rtt_by_site: dict[tuple[float, float], float] = {}
    scored = []
    for frontend in frontends:
        if not frontend.assignable or frontend.name in exclude:
            continue
        measured = latency.get(frontend.name) if latency else None
        if measured is not None:
            rtt = float(measured)
        elif by_coordinates:
            site = (frontend.latitude, frontend.longitude)
            rtt = rtt_by_site.get(site)
            if rtt is None:
                rtt = _site_rtt(phi1, cos_phi1, longitude1, frontend.latitude, frontend.longitude)
                rtt_by_site[site] = rtt
        elif placement.region is not None:
            rtt = 0.0 if placement.region == frontend.region else UNKNOWN_RTT_MS
        else:
            rtt = 0.0
        load = frontend.assigned / frontend.capacity if frontend.capacity else 1.0
        scored.append((rtt + load_weight_ms * load, frontend.name, frontend))
    return scored


def _site_rtt(phi1: float, cos_phi1: float, longitude1: float, latitude: float, longitude: float) -> float:
    """Return estimated_rtt_ms(distance_km(...)) from a printer to a site, with the printer's terms precomputed.

    The arithmetic and its order are those of distance_km() and estimated_rtt_ms(), so the result is
    equal to the last bit.
    """
    phi2 = math.radians(latitude)
    a = (math.sin((phi2 - phi1) / 2) ** 2
         + cos_phi1 * math.cos(phi2) * math.sin(math.radians(longitude - longitude1) / 2) ** 2)
    km = 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))
    return km * 1.5 / 100.0 + 5.0


_SCORE_AND_NAME = operator.itemgetter(0, 1)
_FIRST = operator.itemgetter(0)
