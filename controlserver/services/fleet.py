"""Enrollment, registration, heartbeats, assignment and drain: the fleet's state in the database.

Every function here is synchronous; the API runs them in worker threads. Capacity is enforced by
one conditional UPDATE per assignment (`assigned < capacity`) in the same transaction as the
printer row, so concurrent registrations never exceed it, on SQLite (one writer at a time) and on
PostgreSQL (the UPDATE locks the frontend row and rechecks the condition).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from controlserver import metrics
from controlserver.api import schemas
from controlserver.core.db import Database
from controlserver.core.security import (
    ENROLLMENT_TOKEN_PREFIX,
    PRINTER_TOKEN_PREFIX,
    hash_token,
    new_password,
    new_token,
)
from controlserver.core.settings import Settings
from controlserver.errors import (
    AuthenticationFailed,
    CapacityExhausted,
    Forbidden,
    NotFound,
    PrinterIdConflict,
    ZrokAccountFailed,
)
from controlserver.inventory import FrontendConfig
from controlserver.models import EnrollmentToken, Frontend, Printer, ZrokAccount, utcnow
from controlserver.services.assignment import FrontendState, Placement, rank
from controlserver.services.zrok import ZrokAdmin

log = logging.getLogger(__name__)

CANDIDATE_COUNT = 3


@dataclass
class Registered:
    printer_id: str
    printer_token: str | None
    frontend: str


class Fleet:
    """The fleet's operations on the database, shared by the API and the monitor."""

    def __init__(self, db: Database, settings: Settings, zrok: ZrokAdmin) -> None:
        self.db = db
        self.settings = settings
        self.zrok = zrok

    # -- inventory -------------------------------------------------------------------------

    def sync_frontends(self, configs: dict[str, FrontendConfig]) -> None:
        """Store the inventory's frontends; frontends no longer listed keep their row, marked
        out of inventory, so the monitor moves their printers away."""
        with self.db.write() as session:
            existing = {f.name: f for f in session.scalars(select(Frontend))}
            for name, config in configs.items():
                row = existing.get(name)
                if row is None:
                    row = Frontend(name=name, assigned=0, healthy=True, draining=False, in_inventory=True,
                                   consecutive_failures=0, consecutive_successes=0)
                    session.add(row)
                    log.info("frontend added", extra={"frontend": name, "region": config.region})
                row.region = config.region
                row.location = config.location
                row.latitude = config.latitude
                row.longitude = config.longitude
                row.capacity = config.capacity
                row.api_endpoint = config.api_endpoint
                row.share_domain = config.share_domain
                row.health_url = config.health_url
                if not row.in_inventory:
                    log.info("frontend back in inventory", extra={"frontend": name})
                row.in_inventory = True
            for name, row in existing.items():
                if name not in configs and row.in_inventory:
                    row.in_inventory = False
                    log.warning(
                        "frontend removed from inventory; its printers will be moved",
                        extra={"frontend": name, "count": row.assigned},
                    )

    # -- enrollment tokens -----------------------------------------------------------------

    def create_enrollment_token(self, request: schemas.EnrollmentTokenRequest) -> schemas.EnrollmentTokenResponse:
        token = new_token(ENROLLMENT_TOKEN_PREFIX)
        now = utcnow()
        expires_at = now + timedelta(seconds=request.expires_in_s) if request.expires_in_s else None
        with self.db.write() as session:
            session.add(EnrollmentToken(
                token_hash=hash_token(token), description=request.description, created_at=now,
                expires_at=expires_at, max_uses=request.max_uses, uses=0,
            ))
        log.info("enrollment token created", extra={"count": request.max_uses})
        return schemas.EnrollmentTokenResponse(token=token, expires_at=expires_at, max_uses=request.max_uses)

    # -- registration ----------------------------------------------------------------------

    def register(self, bearer: str, request: schemas.RegisterRequest) -> schemas.RegisterResponse:
        """Enroll or re-register a printer and return its assignment, creating its zrok account."""
        token_hash = hash_token(bearer)
        registered = self._register_in_database(token_hash, request)
        assignment = self.assignment_for(registered.printer_id, registered.frontend)
        return schemas.RegisterResponse(
            printer_id=registered.printer_id,
            printer_token=registered.printer_token,
            assignment=assignment,
            heartbeat_interval_s=self.settings.heartbeat_interval_s,
        )

    def _register_in_database(self, token_hash: str, request: schemas.RegisterRequest) -> Registered:
        now = utcnow()
        printer_token: str | None = None

        with self.db.write() as session:
            # The lookup by hash is an index search; the token is 256 random bits, so its hash
            # gives an attacker nothing to time.
            printer = session.scalar(select(Printer).where(Printer.token_hash == token_hash))
            if printer is not None:
                if printer.id != request.printer_id:
                    raise Forbidden(
                        f"this printer token belongs to printer {printer.id}, not {request.printer_id}: "
                        "a printer may only register itself"
                    )
                self._check_hardware(printer, request)
            else:
                enrollment = self._use_enrollment_token(session, token_hash, now)
                printer = session.get(Printer, request.printer_id)
                printer_token = new_token(PRINTER_TOKEN_PREFIX)
                if printer is None:
                    printer = self._enroll(session, request, printer_token, now)
                    self._count_enrollment_use(session, enrollment)
                    log.info("printer enrolled", extra={"printer": printer.id})
                else:
                    # Same machine enrolling again, e.g. after losing its printer token.
                    self._check_hardware(printer, request)
                    printer.token_hash = hash_token(printer_token)
                    log.info("printer re-enrolled with a new printer token", extra={"printer": printer.id})

            self._update_printer_details(printer, request, now)
            self._ensure_assigned(session, printer, now)
            frontend = printer.frontend

        return Registered(printer_id=request.printer_id, printer_token=printer_token, frontend=frontend)

    def _use_enrollment_token(self, session: Session, token_hash: str, now: datetime) -> EnrollmentToken:
        enrollment = session.scalar(select(EnrollmentToken).where(EnrollmentToken.token_hash == token_hash))
        if enrollment is None:
            raise AuthenticationFailed(
                "the bearer token is not a valid enrollment or printer token: "
                "ask the operator for a current enrollment token"
            )
        if enrollment.expires_at is not None and enrollment.expires_at <= now:
            raise AuthenticationFailed(
                "the enrollment token has expired: create a new one with "
                "`python -m controlserver enrollment-token`"
            )
        if enrollment.max_uses is not None and enrollment.uses >= enrollment.max_uses:
            raise AuthenticationFailed(
                f"the enrollment token was used {enrollment.uses} of {enrollment.max_uses} times: "
                "create a new one with `python -m controlserver enrollment-token`"
            )
        return enrollment

    @staticmethod
    def _count_enrollment_use(session: Session, enrollment: EnrollmentToken) -> None:
        # Conditional, so two concurrent enrollments cannot both take the last use.
        condition = EnrollmentToken.id == enrollment.id
        if enrollment.max_uses is not None:
            condition = condition & (EnrollmentToken.uses < EnrollmentToken.max_uses)
        result = session.execute(
            update(EnrollmentToken).where(condition).values(uses=EnrollmentToken.uses + 1)
        )
        if result.rowcount != 1:
            raise AuthenticationFailed(
                "the enrollment token has no uses left: create a new one with "
                "`python -m controlserver enrollment-token`"
            )

    @staticmethod
    def _check_hardware(printer: Printer, request: schemas.RegisterRequest) -> None:
        if printer.hardware_id != request.hardware_id:
            log.warning(
                "registration rejected: printer id enrolled from another machine",
                extra={"printer": printer.id},
            )
            raise PrinterIdConflict(
                f"printer id {printer.id} is already enrolled from another machine (different "
                "hardware_id), e.g. a cloned SD card: give this printer its own printer id, or "
                "delete the old printer with the admin API if the hardware was replaced"
            )

    def _enroll(self, session: Session, request: schemas.RegisterRequest, printer_token: str, now: datetime) -> Printer:
        printer = Printer(
            id=request.printer_id, hardware_id=request.hardware_id, token_hash=hash_token(printer_token),
            share_password=new_password(), enrolled_at=now, registered_at=now, probe_failures=0,
            restart_share=False,
        )
        session.add(printer)
        try:
            session.flush()
        except IntegrityError:
            # Only reachable on PostgreSQL, where two first enrollments of one id can race.
            raise PrinterIdConflict(
                f"printer id {request.printer_id} is being enrolled by another request: retry later"
            ) from None
        return printer

    @staticmethod
    def _update_printer_details(printer: Printer, request: schemas.RegisterRequest, now: datetime) -> None:
        printer.registered_at = now
        if request.latitude is not None and request.longitude is not None:
            printer.latitude, printer.longitude = request.latitude, request.longitude
        if request.region is not None:
            printer.region = request.region
        if request.agent_version is not None:
            printer.agent_version = request.agent_version
        if request.moonraker_version is not None:
            printer.moonraker_version = request.moonraker_version
        if request.moonraker_api_key is not None:
            printer.moonraker_api_key = request.moonraker_api_key

    def _ensure_assigned(self, session: Session, printer: Printer, now: datetime) -> None:
        """Keep the printer's frontend unless it is unhealthy, draining or gone."""
        states = self._frontend_states(session)
        current = states.get(printer.frontend) if printer.frontend else None
        if current is not None and current.in_inventory and current.healthy and not current.draining:
            return

        reason = "new" if printer.frontend is None else _why_leave(current)
        chosen = self._assign(session, printer, states, reason, now)
        if chosen is None and current is not None:
            log.warning(
                "printer stays on its frontend: no other frontend has capacity",
                extra={"printer": printer.id, "frontend": current.name, "reason": reason},
            )
            return
        if chosen is None:
            raise CapacityExhausted(
                "capacity is exhausted: every healthy frontend is full or draining; "
                "add frontends or raise fleet_capacity, then retry"
            )

    def _assign(
        self,
        session: Session,
        printer: Printer,
        states: dict[str, FrontendState],
        reason: str,
        now: datetime,
    ) -> str | None:
        """Move `printer` to the best frontend with room and return its name, or None if all are full."""
        placement = Placement(printer.latitude, printer.longitude, printer.region, printer.latency_ms)
        exclude = frozenset({printer.frontend}) if printer.frontend else frozenset()
        for candidate in rank(list(states.values()), placement, self.settings.load_weight_ms, exclude):
            reserved = session.execute(
                update(Frontend)
                .where(
                    Frontend.name == candidate.name,
                    Frontend.assigned < Frontend.capacity,
                    Frontend.healthy.is_(True),
                    Frontend.draining.is_(False),
                    Frontend.in_inventory.is_(True),
                )
                .values(assigned=Frontend.assigned + 1)
                .execution_options(synchronize_session=False)
            )
            if reserved.rowcount != 1:
                continue

            previous = printer.frontend
            if previous is not None:
                session.execute(
                    update(Frontend).where(Frontend.name == previous)
                    .values(assigned=Frontend.assigned - 1)
                    .execution_options(synchronize_session=False)
                )
            printer.frontend = candidate.name
            printer.assigned_at = now
            printer.move_reason = reason
            printer.probe_failures = 0
            printer.restart_share = False
            session.flush()

            metrics.ASSIGNMENTS.labels(frontend=candidate.name, reason=reason).inc()
            if previous is not None:
                metrics.MOVES.labels(from_frontend=previous, reason=reason).inc()
                log.info("printer moved", extra={"printer": printer.id, "from_frontend": previous,
                                                 "to_frontend": candidate.name, "reason": reason})
            else:
                log.info("printer assigned", extra={"printer": printer.id, "frontend": candidate.name})
            return candidate.name
        return None

    def _frontend_states(self, session: Session) -> dict[str, FrontendState]:
        rows = session.execute(select(
            Frontend.name, Frontend.region, Frontend.latitude, Frontend.longitude, Frontend.capacity,
            Frontend.assigned, Frontend.healthy, Frontend.draining, Frontend.in_inventory,
            Frontend.api_endpoint,
        )).all()
        states = {}
        for row in rows:
            state = FrontendState(*row)
            if not self.zrok.has_admin_secret(state.name):
                # Without the admin secret no account can be made there.
                state = FrontendState(**{**state.__dict__, "healthy": False})
            states[state.name] = state
        return states

    # -- assignment objects and zrok accounts ----------------------------------------------

    def assignment_for(self, printer_id: str, frontend_name: str) -> schemas.Assignment:
        """Build the printer's assignment, creating its zrok account on the frontend if needed."""
        with self.db.read() as session:
            printer = session.get(Printer, printer_id)
            frontend = session.get(Frontend, frontend_name)
            account = session.get(ZrokAccount, (printer_id, frontend_name))
        if printer is None or frontend is None:
            raise NotFound(f"printer {printer_id} is not registered: register it first")

        if account is None:
            try:
                created = self.zrok.create_account(frontend.name, frontend.api_endpoint, printer_id)
            except ZrokAccountFailed:
                metrics.ZROK_ACCOUNT_FAILURES.labels(frontend=frontend.name).inc()
                raise
            metrics.ZROK_ACCOUNTS.labels(frontend=frontend.name).inc()
            account_token = self._store_account(printer_id, frontend.name, created.email, created.account_token)
        else:
            account_token = account.account_token

        share_name = share_name_for(printer_id)
        return schemas.Assignment(
            frontend=frontend.name,
            region=frontend.region,
            api_endpoint=frontend.api_endpoint,
            share_name=share_name,
            public_url=f"https://{share_name}.{frontend.share_domain}",
            account_token=account_token,
            share_auth=schemas.ShareAuth(
                mode="basic", username=self.settings.share_auth_username, password=printer.share_password
            ),
        )

    def _store_account(self, printer_id: str, frontend: str, email: str, account_token: str) -> str:
        with self.db.write() as session:
            existing = session.get(ZrokAccount, (printer_id, frontend))
            if existing is not None:
                # A concurrent request of the same printer stored one first; keep that one.
                return existing.account_token
            session.add(ZrokAccount(printer_id=printer_id, frontend=frontend, email=email,
                                    account_token=account_token, created_at=utcnow()))
        return account_token

    # -- heartbeats ------------------------------------------------------------------------

    def heartbeat(self, bearer: str, printer_id: str, request: schemas.HeartbeatRequest) -> schemas.HeartbeatResponse:
        token_hash = hash_token(bearer)
        now = utcnow()
        with self.db.write() as session:
            printer = session.scalar(select(Printer).where(Printer.token_hash == token_hash))
            if printer is None:
                raise AuthenticationFailed(
                    "the bearer token is not a valid printer token: register again with an enrollment token"
                )
            if printer.id != printer_id:
                raise Forbidden(
                    f"this printer token belongs to printer {printer.id}, not {printer_id}: "
                    "a printer may only send its own heartbeat"
                )

            printer.last_heartbeat_at = now
            printer.reported_frontend = request.frontend
            printer.share_state = request.share_state
            printer.share_token = request.share_token
            printer.moonraker_state = request.moonraker_state
            printer.klippy_state = request.klippy_state
            if request.latency_ms:
                printer.latency_ms = {k: float(v) for k, v in request.latency_ms.items()}
            if request.agent_version:
                printer.agent_version = request.agent_version

            states = self._frontend_states(session)
            if printer.frontend is None:
                self._ensure_assigned(session, printer, now)
            action, reason = self._decide(printer, request, states)
            if action == "restart_share":
                printer.restart_share = False
                printer.probe_failures = 0
            frontend = printer.frontend
            placement = Placement(printer.latitude, printer.longitude, printer.region, printer.latency_ms)

        if action != "stay":
            log.info("heartbeat answered", extra={"printer": printer_id, "frontend": frontend,
                                                  "action": action, "reason": reason})
        metrics.HEARTBEAT_ACTIONS.labels(action=action).inc()

        candidates = [
            schemas.Candidate(frontend=state.name, api_endpoint=state.api_endpoint)
            for state in rank(list(states.values()), placement, self.settings.load_weight_ms,
                              frozenset({frontend}))[:CANDIDATE_COUNT]
        ]
        return schemas.HeartbeatResponse(
            action=action,
            reason=reason,
            assignment=self.assignment_for(printer_id, frontend),
            heartbeat_interval_s=self.settings.heartbeat_interval_s,
            candidates=candidates,
        )

    @staticmethod
    def _decide(printer: Printer, request: schemas.HeartbeatRequest, states: dict[str, FrontendState]) -> tuple[str, str]:
        if request.frontend != printer.frontend:
            reason = printer.move_reason or "assigned"
            return "move", f"assigned to frontend {printer.frontend} ({reason})"
        if printer.restart_share:
            return "restart_share", "the public URL of the share failed the outside probe"
        state = states.get(printer.frontend)
        if state is not None and not (state.healthy and state.in_inventory and not state.draining):
            return "stay", f"frontend {printer.frontend} is {_why_leave(state)}; a move is queued"
        return "stay", ""

    # -- batched moves ---------------------------------------------------------------------

    def move_batch(self) -> int:
        """Move up to move_batch_size printers off unhealthy, draining or removed frontends.

        Returns how many moved. Printers move only when they have a reason to; a recovered or
        new frontend attracts new registrations and moved printers, never a stampede.
        """
        now = utcnow()
        moved = 0
        with self.db.write() as session:
            states = self._frontend_states(session)
            leaving = [name for name, s in states.items() if not (s.healthy and s.in_inventory and not s.draining)]
            if not leaving:
                return 0
            printers = session.scalars(
                select(Printer).where(Printer.frontend.in_(leaving))
                .order_by(Printer.assigned_at, Printer.id).limit(self.settings.move_batch_size)
            ).all()
            for printer in printers:
                reason = _why_leave(states[printer.frontend])
                chosen = self._assign(session, printer, states, reason, now)
                if chosen is None:
                    log.warning("moves stopped: no frontend has capacity left",
                                extra={"count": len(printers) - moved})
                    break
                moved += 1
                # Refresh loads so the next printer in this batch sees the new counts.
                states = self._frontend_states(session)
        if moved:
            log.info("move batch done", extra={"moved": moved})
        return moved

    # -- admin views -----------------------------------------------------------------------

    def list_printers(self, limit: int, after: str | None, frontend: str | None) -> schemas.PrinterList:
        with self.db.read() as session:
            query = select(Printer, Frontend.share_domain).outerjoin(Frontend, Printer.frontend == Frontend.name)
            if after:
                query = query.where(Printer.id > after)
            if frontend:
                query = query.where(Printer.frontend == frontend)
            rows = session.execute(query.order_by(Printer.id).limit(limit + 1)).all()
        page = rows[:limit]
        return schemas.PrinterList(
            printers=[_printer_view(printer, domain) for printer, domain in page],
            next_after=page[-1][0].id if len(rows) > limit else None,
        )

    def get_printer(self, printer_id: str) -> schemas.PrinterAccess:
        with self.db.read() as session:
            printer = session.get(Printer, printer_id)
            if printer is None:
                raise NotFound(f"printer {printer_id} is not registered: check the id with GET /v1/printers")
            frontend = session.get(Frontend, printer.frontend) if printer.frontend else None
        view = _printer_view(printer, frontend.share_domain if frontend else None)
        return schemas.PrinterAccess(
            **view.model_dump(),
            share_auth=schemas.ShareAuth(mode="basic", username=self.settings.share_auth_username,
                                         password=printer.share_password),
            moonraker_api_key=printer.moonraker_api_key,
        )

    def delete_printer(self, printer_id: str) -> None:
        with self.db.write() as session:
            printer = session.get(Printer, printer_id)
            if printer is None:
                raise NotFound(f"printer {printer_id} is not registered: check the id with GET /v1/printers")
            if printer.frontend is not None:
                session.execute(update(Frontend).where(Frontend.name == printer.frontend)
                                .values(assigned=Frontend.assigned - 1))
            session.execute(delete(ZrokAccount).where(ZrokAccount.printer_id == printer_id))
            session.delete(printer)
        # NOTE: the printer's zrok accounts stay on the instances; delete them with
        # `zrok2 admin delete account <printer>@<domain>` when the hardware is retired.
        log.info("printer deleted", extra={"printer": printer_id})

    def list_frontends(self) -> schemas.FrontendList:
        with self.db.read() as session:
            rows = session.scalars(select(Frontend).order_by(Frontend.name)).all()
        return schemas.FrontendList(frontends=[self._frontend_view(row) for row in rows])

    def set_draining(self, name: str, draining: bool) -> schemas.FrontendView:
        with self.db.write() as session:
            row = session.get(Frontend, name)
            if row is None:
                raise NotFound(f"frontend {name} is not in the inventory: check the name with GET /v1/frontends")
            row.draining = draining
        log.info("frontend drained" if draining else "frontend undrained",
                 extra={"frontend": name, "count": row.assigned})
        return self._frontend_view(row)

    def _frontend_view(self, row: Frontend) -> schemas.FrontendView:
        return schemas.FrontendView(
            name=row.name, region=row.region, location=row.location, capacity=row.capacity,
            assigned=row.assigned, load=round(row.assigned / row.capacity, 4) if row.capacity else 1.0,
            healthy=row.healthy, draining=row.draining, in_inventory=row.in_inventory,
            api_endpoint=row.api_endpoint, share_domain=row.share_domain,
            zrok_admin_secret=self.zrok.has_admin_secret(row.name),
            consecutive_failures=row.consecutive_failures, last_probe_at=row.last_probe_at,
            last_probe_error=row.last_probe_error,
        )

    def counts(self) -> tuple[list[tuple[str | None, str | None, int]], list[Frontend]]:
        """Return printer counts per frontend and share state, and all frontends, for /metrics."""
        with self.db.read() as session:
            per_state = session.execute(
                select(Printer.frontend, Printer.share_state, func.count()).group_by(Printer.frontend, Printer.share_state)
            ).all()
            frontends = session.scalars(select(Frontend)).all()
        return [tuple(row) for row in per_state], list(frontends)


def share_name_for(printer_id: str) -> str:
    # NOTE: a 62- or 63-character printer id gives a share name longer than one DNS label (63).
    return f"p-{printer_id}"


def _why_leave(state: FrontendState | None) -> str:
    if state is None or not state.in_inventory:
        return "removed"
    if state.draining:
        return "draining"
    if not state.healthy:
        return "unhealthy"
    return "rebalance"


def _printer_view(printer: Printer, share_domain: str | None) -> schemas.PrinterView:
    public_url = f"https://{share_name_for(printer.id)}.{share_domain}" if share_domain else None
    return schemas.PrinterView(
        printer_id=printer.id, frontend=printer.frontend, public_url=public_url, region=printer.region,
        latitude=printer.latitude, longitude=printer.longitude, agent_version=printer.agent_version,
        moonraker_version=printer.moonraker_version, enrolled_at=printer.enrolled_at,
        registered_at=printer.registered_at, assigned_at=printer.assigned_at,
        move_reason=printer.move_reason, last_heartbeat_at=printer.last_heartbeat_at,
        reported_frontend=printer.reported_frontend, share_state=printer.share_state,
        moonraker_state=printer.moonraker_state, klippy_state=printer.klippy_state,
        latency_ms=printer.latency_ms, probe_failures=printer.probe_failures,
        last_probe_at=printer.last_probe_at, restart_share_pending=printer.restart_share,
    )
