"""Health monitor: frontend probes, printer public URL probes and batched moves.

Only the holder of the `monitor` lease row runs them, so several replicas on one PostgreSQL
database probe and move printers once. A holder that stops renewing loses the lease after
lease_ttl_s and another replica takes over.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from datetime import timedelta

import anyio
import httpx
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from controlserver import metrics
from controlserver.core.tls import client_ssl_context
from controlserver.models import Frontend, Lease, Printer, utcnow
from controlserver.services import events
from controlserver.services.fleet import Fleet, share_name_for

log = logging.getLogger(__name__)

LEASE_NAME = "monitor"
PRINTER_PROBE_PAGE = 500


class Monitor:
    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.settings = fleet.settings
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self.is_leader = False
        self._client: httpx.AsyncClient | None = None

    async def run(self) -> None:
        """Hold or wait for the lease and run each job when it is due, until cancelled."""
        settings = self.settings
        tick = min(settings.frontend_probe_interval_s, settings.move_interval_s,
                   settings.printer_probe_interval_s, settings.lease_ttl_s / 3)
        due = {"frontends": 0.0, "moves": 0.0, "printers": 0.0, "pools": 0.0}
        await self._renew_lease()
        # Renewal runs beside the jobs, so a job round longer than the lease does not lose it.
        renewal = asyncio.create_task(self._keep_lease(tick), name="monitor-lease")
        try:
            while True:
                if self.is_leader:
                    now = time.monotonic()
                    if now >= due["frontends"]:
                        due["frontends"] = now + settings.frontend_probe_interval_s
                        await self._run_job("frontend probes", self.probe_frontends)
                    if now >= due["moves"]:
                        due["moves"] = now + settings.move_interval_s
                        await self._run_job("moves", self.move_batch)
                    if now >= due["pools"]:
                        due["pools"] = now + settings.zrok_account_pool_refill_interval_s
                        await self._run_job("account pool refill", self.refill_account_pools)
                    if now >= due["printers"]:
                        due["printers"] = now + settings.printer_probe_interval_s
                        await self._run_job("printer probes", self.probe_printers)
                await asyncio.sleep(tick)
        finally:
            renewal.cancel()
            await asyncio.gather(renewal, return_exceptions=True)
            if self._client is not None:
                await self._client.aclose()
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._release_lease)

    async def _run_job(self, name: str, job) -> None:
        if not self.is_leader:
            return
        try:
            await job()
        except Exception:
            # A failed round is retried at the next interval; the server keeps serving.
            log.exception("monitor job failed; retrying at the next interval", extra={"action": name})

    # -- lease -----------------------------------------------------------------------------

    async def _keep_lease(self, tick: float) -> None:
        while True:
            await asyncio.sleep(tick)
            await self._renew_lease()

    async def _renew_lease(self) -> None:
        try:
            leader = await anyio.to_thread.run_sync(self._try_lease)
        except Exception:
            log.exception("monitor lease renewal failed; acting as follower")
            leader = False
        if leader != self.is_leader:
            log.info("monitor lease acquired" if leader else "monitor lease lost", extra={"holder": self.holder})
        self.is_leader = leader
        metrics.MONITOR_LEADER.set(1 if leader else 0)

    def _try_lease(self) -> bool:
        now = utcnow()
        expires_at = now + timedelta(seconds=self.settings.lease_ttl_s)
        try:
            with self.fleet.db.write_session() as session:
                lease = session.get(Lease, LEASE_NAME, with_for_update=True)
                if lease is None:
                    session.add(Lease(name=LEASE_NAME, holder=self.holder, expires_at=expires_at))
                    return True
                if lease.holder == self.holder or lease.expires_at <= now:
                    lease.holder = self.holder
                    lease.expires_at = expires_at
                    return True
                return False
        except IntegrityError:
            # Another replica inserted the lease row first.
            return False

    def _release_lease(self) -> None:
        if not self.is_leader:
            return
        with self.fleet.db.write_session() as session:
            session.execute(update(Lease).where(Lease.name == LEASE_NAME, Lease.holder == self.holder)
                            .values(expires_at=utcnow()))
        self.is_leader = False
        metrics.MONITOR_LEADER.set(0)
        log.info("monitor lease released", extra={"holder": self.holder})

    # -- frontends -------------------------------------------------------------------------

    async def probe_frontends(self) -> None:
        with self.fleet.db.read() as session:
            targets = session.execute(
                select(Frontend.name, Frontend.api_endpoint, Frontend.health_url).where(Frontend.in_inventory.is_(True))
            ).all()
        # Bounded, because httpx queues the requests beyond its pool's connections and rescans that
        # queue on every change. Unbounded rounds over 500 frontends stalled heartbeats for seconds.
        limiter = asyncio.Semaphore(self.settings.frontend_probe_concurrency)

        async def probe(api_endpoint: str, health_url: str) -> str | None:
            async with limiter:
                return await self._probe_frontend(api_endpoint, health_url)

        results = await asyncio.gather(*(probe(api, health) for _, api, health in targets))
        await anyio.to_thread.run_sync(self._record_frontend_results,
                                       {name: error for (name, _, _), error in zip(targets, results)})

    async def _probe_frontend(self, api_endpoint: str, health_url: str) -> str | None:
        """Return None when both the zrok controller and the public frontend return 2xx, else the reason."""
        for url in (f"{api_endpoint}/api/v2/versions", health_url):
            error = await self._get(url)
            if error is not None:
                return f"GET {url}: {error}"
        return None

    def _record_frontend_results(self, results: dict[str, str | None]) -> None:
        settings = self.settings
        now = utcnow()
        self.fleet.invalidate_frontend_states()
        for name, error in results.items():
            # One transaction per frontend. A registration locks the row of the frontend that it
            # moves a printer to while it waits for the row of the one it leaves. A transaction
            # that locks several frontend rows in name order deadlocks with it on PostgreSQL.
            with self.fleet.db.write_session() as session:
                row = session.get(Frontend, name)
                if row is None:
                    continue
                row.last_probe_at = now
                row.last_probe_error = error
                metrics.FRONTEND_PROBES.labels(frontend=name, result="ok" if error is None else "failed").inc()
                if error is None:
                    row.consecutive_successes += 1
                    row.consecutive_failures = 0
                    if not row.healthy and row.consecutive_successes >= settings.healthy_after:
                        row.healthy = True
                        row.health_changed_at = now
                        row.state_changed_at = now
                        events.record_frontend(session, events.HEALTHY, name, count=row.assigned, now=now)
                        metrics.HEALTH_TRANSITIONS.labels(frontend=name, to="healthy").inc()
                        log.info("frontend healthy again; it takes new printers, assigned ones stay put",
                                 extra={"frontend": name, "successes": row.consecutive_successes})
                else:
                    row.consecutive_failures += 1
                    row.consecutive_successes = 0
                    if row.healthy and row.consecutive_failures >= settings.unhealthy_after:
                        row.healthy = False
                        row.health_changed_at = now
                        row.state_changed_at = now
                        events.record_frontend(session, events.UNHEALTHY, name, count=row.assigned,
                                               detail=error, now=now)
                        metrics.HEALTH_TRANSITIONS.labels(frontend=name, to="unhealthy").inc()
                        log.warning("frontend unhealthy; its printers will be moved in batches",
                                    extra={"frontend": name, "failures": row.consecutive_failures,
                                           "error": error, "count": row.assigned})
                    elif row.healthy:
                        log.info("frontend probe failed", extra={"frontend": name, "error": error,
                                                                 "failures": row.consecutive_failures})
        # Once per probe round, so the event list stays bounded without a job of its own.
        with self.fleet.db.write_session() as session:
            events.prune(session)

    # -- moves -----------------------------------------------------------------------------

    async def move_batch(self) -> None:
        await anyio.to_thread.run_sync(self.fleet.move_batch)

    async def refill_account_pools(self) -> None:
        await anyio.to_thread.run_sync(self.fleet.refill_account_pools)

    # -- printers --------------------------------------------------------------------------

    async def probe_printers(self) -> None:
        """Probe the public URL of every printer whose agent reports an active share there."""
        after = ""
        limiter = asyncio.Semaphore(self.settings.printer_probe_concurrency)
        while True:
            page = await anyio.to_thread.run_sync(self._printer_page, after)
            if not page:
                return
            after = page[-1][0]

            async def probe(row):
                async with limiter:
                    return await self._probe_printer(*row)

            errors = await asyncio.gather(*(probe(row) for row in page))
            await anyio.to_thread.run_sync(self._record_printer_results,
                                           {row[0]: error for row, error in zip(page, errors)})

    def _printer_page(self, after: str) -> list[tuple]:
        with self.fleet.db.read() as session:
            rows = session.execute(
                select(Printer.id, Frontend.share_domain, Printer.moonraker_api_key, Printer.share_password)
                .join(Frontend, Printer.frontend == Frontend.name)
                .where(Printer.id > after, Printer.share_state == "active",
                       Printer.reported_frontend == Printer.frontend, Frontend.healthy.is_(True))
                .order_by(Printer.id).limit(PRINTER_PROBE_PAGE)
            ).all()
        return [tuple(row) for row in rows]

    async def _probe_printer(self, printer_id: str, share_domain: str, api_key: str | None, password: str) -> str | None:
        url = f"https://{share_name_for(printer_id)}.{share_domain}/server/info"
        headers = {"X-Api-Key": api_key} if api_key else {}
        # 401 and 403 come from Moonraker or the share's basic auth, so the share itself works
        # (e.g. the printer sent no API key). Errors, 404 (share not found) and 5xx do not.
        return await self._get(url, headers=headers, auth=(self.settings.share_auth_username, password),
                               accept=(401, 403))

    def _record_printer_results(self, results: dict[str, str | None]) -> None:
        now = utcnow()
        threshold = self.settings.printer_probe_failures
        with self.fleet.db.write_session() as session:
            for printer_id, error in results.items():
                printer = session.get(Printer, printer_id)
                if printer is None:
                    continue
                printer.last_probe_at = now
                printer.last_probe_error = error
                if error is None:
                    printer.probe_failures = 0
                    continue
                metrics.PRINTER_PROBE_FAILURES.inc()
                printer.probe_failures += 1
                if printer.probe_failures >= threshold and not printer.restart_share:
                    printer.restart_share = True
                    log.warning("public URL probe failed; the agent will be told to restart its share",
                                extra={"printer": printer_id, "frontend": printer.frontend,
                                       "failures": printer.probe_failures, "error": error})

    async def _get(self, url: str, accept: tuple[int, ...] = (), **kwargs) -> str | None:
        if self._client is None:
            self._client = httpx.AsyncClient(verify=client_ssl_context(self.settings.ca_file),
                                             timeout=self.settings.probe_timeout_s, follow_redirects=False)
        try:
            response = await self._client.get(url, **kwargs)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:300]
        if not (200 <= response.status_code < 300 or response.status_code in accept):
            return f"HTTP {response.status_code}"
        return None
