"""Enrollment, registration, heartbeats, assignment and drain: the fleet's state in the database.

Every function here is synchronous; the API runs them in worker threads. Capacity is enforced by
one conditional UPDATE per assignment (`assigned < capacity`) in the same transaction as the
printer row. So concurrent registrations never exceed it: SQLite runs one writer at a time, and
PostgreSQL locks the frontend row for the UPDATE and rechecks the condition.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update

from controlserver import metrics
from controlserver.api import schemas
from controlserver.core.db import Database, DriverStatement
from controlserver.core.security import (
    ENROLLMENT_TOKEN_PREFIX,
    PRINTER_TOKEN_PREFIX,
    hash_token,
    new_password,
    new_token,
)
from controlserver.core.roles import Identity
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
from controlserver.models import EnrollmentToken, Frontend, PooledZrokAccount, Printer, ZrokAccount, utcnow
from controlserver.services import events
from controlserver.services.access import access_warnings
from controlserver.services.assignment import FrontendState, Placement, Site, best_few, best_first, sites_of
from controlserver.services.zrok import ZrokAdmin

log = logging.getLogger(__name__)

CANDIDATE_COUNT = 3
STATES_MAX_AGE_S = 1.0


PRINTERS = Printer.__table__
FRONTENDS = Frontend.__table__
ENROLLMENT_TOKENS = EnrollmentToken.__table__
ZROK_ACCOUNTS = ZrokAccount.__table__
ACCOUNT_POOL = PooledZrokAccount.__table__

# Statements of the request paths, built once: building and hashing a statement per request
# costs more CPU than SQLite takes to run it.
SELECT_ACCOUNT = select(ZROK_ACCOUNTS.c.account_token).where(
    ZROK_ACCOUNTS.c.printer_id == bindparam("b_printer"), ZROK_ACCOUNTS.c.frontend == bindparam("b_frontend"))
CLAIM_POOLED_ACCOUNT = (
    delete(ACCOUNT_POOL)
    .where(ACCOUNT_POOL.c.id == select(func.min(ACCOUNT_POOL.c.id))
           .where(ACCOUNT_POOL.c.frontend == bindparam("b_frontend")).scalar_subquery())
    .returning(ACCOUNT_POOL.c.email, ACCOUNT_POOL.c.account_token)
)
INSERT_ACCOUNT = insert(ZROK_ACCOUNTS)
RESERVE_PLACE = (
    update(FRONTENDS)
    .where(
        FRONTENDS.c.name == bindparam("b_frontend"),
        FRONTENDS.c.assigned < FRONTENDS.c.capacity,
        FRONTENDS.c.healthy.is_(True),
        FRONTENDS.c.draining.is_(False),
        FRONTENDS.c.in_inventory.is_(True),
    )
    .values(assigned=FRONTENDS.c.assigned + 1)
)
RELEASE_PLACE = update(FRONTENDS).where(FRONTENDS.c.name == bindparam("b_frontend")).values(
    assigned=FRONTENDS.c.assigned - 1)
SELECT_ENROLLMENT_TOKEN = select(
    ENROLLMENT_TOKENS.c.id, ENROLLMENT_TOKENS.c.expires_at, ENROLLMENT_TOKENS.c.max_uses, ENROLLMENT_TOKENS.c.uses,
).where(ENROLLMENT_TOKENS.c.token_hash == bindparam("b_hash"))
# The columns that an enrollment writes; the others keep their database defaults.
NEW_PRINTER_COLUMNS = (
    "id", "hardware_id", "token_hash", "share_password", "frontend", "assigned_at", "move_reason", "enrolled_at",
    "registered_at", "probe_failures", "restart_share", "latitude", "longitude", "region", "agent_version",
    "moonraker_version", "moonraker_api_key",
)


@dataclass
class AssignedPrinter:
    """Data for building an assignment, read in the transaction that assigned the printer."""

    printer_id: str
    share_password: str
    frontend: FrontendState
    account_token: str | None


@dataclass
class HeartbeatDecision:
    action: str
    reason: str
    assigned: AssignedPrinter
    candidates: list[schemas.Candidate]


class Fleet:
    """The fleet's operations on the database, shared by the API and the monitor.

    The request paths (registration, heartbeat) use SQLAlchemy Core statements: the ORM's unit
    of work costs several times more CPU per request, and these paths carry the fleet's load.
    """

    def __init__(self, db: Database, settings: Settings, zrok: ZrokAdmin) -> None:
        self.db = db
        self.settings = settings
        self.zrok = zrok
        self._states_cache: tuple[float, dict[str, FrontendState], list[Site]] | None = None
        # RETURNING tells whether the row was inserted: SQLAlchemy promises rowcount only for
        # UPDATE and DELETE, and psycopg reports none for this INSERT.
        self._insert_printer = db.insert_ignoring_conflicts(PRINTERS).returning(PRINTERS.c.id)
        self._insert_account = db.insert_ignoring_conflicts(ZROK_ACCOUNTS).returning(ZROK_ACCOUNTS.c.printer_id)
        # The statements of every enrollment, run on SQLite's driver directly (see DriverStatement).
        self._select_enrollment_token = DriverStatement(db, SELECT_ENROLLMENT_TOKEN)
        self._reserve_place = DriverStatement(db, RESERVE_PLACE)
        self._claim_pooled = DriverStatement(db, CLAIM_POOLED_ACCOUNT)
        self._insert_pooled_account = DriverStatement(db, INSERT_ACCOUNT)
        self._insert_new_printer = DriverStatement(db, self._insert_printer, list(NEW_PRINTER_COLUMNS))

    # -- inventory -------------------------------------------------------------------------

    def sync_frontends(self, configs: dict[str, FrontendConfig]) -> None:
        """Store the inventory's frontends; frontends no longer listed keep their row, marked
        out of inventory, so the monitor moves their printers away."""
        self.invalidate_frontend_states()
        with self.db.write_session() as session:
            existing = {f.name: f for f in session.scalars(select(Frontend))}
            # Recorded after the loop: an INSERT would flush the new rows before they are filled in.
            changes: list[tuple[str, str, int]] = []
            for name, config in configs.items():
                row = existing.get(name)
                if row is None:
                    row = Frontend(name=name, assigned=0, healthy=True, draining=False, in_inventory=True,
                                   consecutive_failures=0, consecutive_successes=0, state_changed_at=utcnow())
                    session.add(row)
                    changes.append((events.ADDED, name, 0))
                    log.info("frontend added", extra={"frontend": name, "region": config.region})
                elif not row.in_inventory:
                    row.state_changed_at = utcnow()
                    changes.append((events.RETURNED, name, row.assigned))
                    log.info("frontend back in inventory", extra={"frontend": name})
                row.region = config.region
                row.location = config.location
                row.latitude = config.latitude
                row.longitude = config.longitude
                row.capacity = config.capacity
                row.api_endpoint = config.api_endpoint
                row.share_domain = config.share_domain
                row.health_url = config.health_url
                row.in_inventory = True
            for name, row in existing.items():
                if name not in configs and row.in_inventory:
                    row.in_inventory = False
                    row.state_changed_at = utcnow()
                    changes.append((events.REMOVED, name, row.assigned))
                    log.warning(
                        "frontend removed from inventory; its printers will be moved",
                        extra={"frontend": name, "count": row.assigned},
                    )
            for kind, name, count in changes:
                events.record_frontend(session, kind, name, count=count)

    # -- enrollment tokens -----------------------------------------------------------------

    def create_enrollment_token(self, request: schemas.EnrollmentTokenRequest) -> schemas.EnrollmentTokenResponse:
        token = new_token(ENROLLMENT_TOKEN_PREFIX)
        now = utcnow()
        expires_at = now + timedelta(seconds=request.expires_in_s) if request.expires_in_s else None
        with self.db.write_session() as session:
            session.add(EnrollmentToken(
                token_hash=hash_token(token), description=request.description, created_at=now,
                expires_at=expires_at, max_uses=request.max_uses, uses=0,
            ))
        log.info("enrollment token created", extra={"count": request.max_uses})
        return schemas.EnrollmentTokenResponse(token=token, expires_at=expires_at, max_uses=request.max_uses)

    # -- registration ----------------------------------------------------------------------

    def register(self, bearer: str, request: schemas.RegisterRequest) -> schemas.RegisterResponse:
        """Enroll or re-register a printer and return its assignment, creating its zrok account."""
        printer_token, assigned = self.register_in_database(bearer, request)
        return self.registration_response(request, printer_token, assigned)

    def registration_response(self, request: schemas.RegisterRequest, printer_token: str | None,
                              assigned: AssignedPrinter) -> schemas.RegisterResponse:
        """Build the registration response, calling the zrok admin API if no account is at hand."""
        return schemas.RegisterResponse.model_validate({
            "printer_id": request.printer_id,
            "printer_token": printer_token,
            "assignment": self.assignment(assigned),
            "heartbeat_interval_s": self.settings.heartbeat_interval_s,
        })

    def register_in_database(self, bearer: str, request: schemas.RegisterRequest) -> tuple[str | None, AssignedPrinter]:
        """Authenticate and assign the printer in a transaction of its own."""
        with self.db.write() as connection:
            return self.register_in_transaction(connection, bearer, request)

    def register_in_transaction(self, connection: Connection, bearer: str,
                                request: schemas.RegisterRequest) -> tuple[str | None, AssignedPrinter]:
        """Authenticate and assign the printer in the caller's transaction; return its new printer
        token (first enrollment only)."""
        if bearer.startswith(PRINTER_TOKEN_PREFIX):
            printer_token, assigned = None, self._register_known(connection, hash_token(bearer), request)
        elif bearer.startswith(ENROLLMENT_TOKEN_PREFIX):
            printer_token, assigned = self._register_enrollment(connection, hash_token(bearer), request)
        else:
            raise AuthenticationFailed(
                "the bearer token is not a valid enrollment or printer token: "
                "ask the operator for a current enrollment token"
            )
        return printer_token, assigned

    def _register_known(self, connection: Connection, token_hash: str, request: schemas.RegisterRequest) -> AssignedPrinter:
        """Register a printer with its own printer token; it keeps its frontend while that is usable."""
        now = utcnow()
        # The lookup by hash is an index search; the token is 256 random bits, so its hash
        # gives an attacker nothing to time.
        printer = connection.execute(
            _printer_columns().where(PRINTERS.c.token_hash == token_hash).with_for_update()).first()
        if printer is None:
            raise AuthenticationFailed(
                "the bearer token is not a valid printer token: register again with an enrollment token"
            )
        if printer.id != request.printer_id:
            raise Forbidden(
                f"this printer token belongs to printer {printer.id}, not {request.printer_id}: "
                "a printer may only register itself"
            )
        self._check_hardware(printer, request)
        return self._register_existing(connection, printer, request, now)

    def _register_enrollment(self, connection: Connection, token_hash: str,
                             request: schemas.RegisterRequest) -> tuple[str, AssignedPrinter]:
        """Enroll a new printer, or re-enroll the same machine, with an enrollment token."""
        now = utcnow()
        printer_token = new_token(PRINTER_TOKEN_PREFIX)
        enrollment = self._check_enrollment_token(connection, token_hash, now)

        # Reserve a place first and insert the printer with it: one statement each, which
        # matters when thousands of printers enroll at once.
        placement = Placement(request.latitude, request.longitude, request.region)
        states = self._frontend_states(connection)
        frontend = self._reserve(connection, placement, states, frozenset(), "new")
        share_password = new_password()
        row = dict.fromkeys(NEW_PRINTER_COLUMNS)
        row.update(_details(request))
        row.update(
            id=request.printer_id, hardware_id=request.hardware_id, token_hash=hash_token(printer_token),
            share_password=share_password, frontend=frontend, assigned_at=now if frontend else None,
            move_reason="new" if frontend else None, enrolled_at=now, registered_at=now,
            probe_failures=0, restart_share=False,
        )
        inserted = self._insert_new_printer.first(connection, row) is not None

        if inserted and frontend is None:
            raise CapacityExhausted(
                "capacity is exhausted: every healthy frontend is full or draining; "
                "add frontends or raise fleet_capacity, then retry"
            )
        if inserted:
            if enrollment.max_uses is not None:
                self._count_enrollment_use(connection, enrollment)
            account_token = self._claim_pooled_account(connection, request.printer_id, frontend)
            log.info("printer enrolled", extra={"printer": request.printer_id, "frontend": frontend})
            return printer_token, AssignedPrinter(request.printer_id, share_password, states[frontend],
                                                  account_token)

        # The id exists: give back the reserved place and treat this as a re-enrollment.
        if frontend is not None:
            self._release(connection, frontend, states)
        printer = connection.execute(
            _printer_columns().where(PRINTERS.c.id == request.printer_id).with_for_update()).first()
        self._check_hardware(printer, request)
        connection.execute(update(PRINTERS).where(PRINTERS.c.id == printer.id)
                           .values(token_hash=hash_token(printer_token)))
        log.info("printer re-enrolled with a new printer token", extra={"printer": printer.id})
        return printer_token, self._register_existing(connection, printer, request, now)

    def _register_existing(self, connection: Connection, printer, request: schemas.RegisterRequest, now: datetime) -> AssignedPrinter:
        connection.execute(update(PRINTERS).where(PRINTERS.c.id == printer.id)
                           .values(registered_at=now, **_details(request)))
        placement = Placement(
            request.latitude if request.latitude is not None else printer.latitude,
            request.longitude if request.longitude is not None else printer.longitude,
            request.region if request.region is not None else printer.region,
            printer.latency_ms,
        )
        states = self._frontend_states(connection)
        frontend = self._ensure_assigned(connection, printer.id, printer.frontend, placement, states, now)
        return self._assigned_printer(connection, printer.id, printer.share_password,
                                      self._state_of(connection, states, frontend))

    def _check_enrollment_token(self, connection: Connection, token_hash: str, now: datetime):
        enrollment = self._select_enrollment_token.first(connection, {"b_hash": token_hash})
        if enrollment is None:
            raise AuthenticationFailed(
                "the bearer token is not a valid enrollment token: ask the operator for a current one"
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
    def _count_enrollment_use(connection: Connection, enrollment) -> None:
        # Conditional, so two concurrent enrollments cannot both take the last use. Uses are
        # counted only for tokens with max_uses, to spare the statement in enrollment storms.
        condition = ENROLLMENT_TOKENS.c.id == enrollment.id
        if enrollment.max_uses is not None:
            condition = condition & (ENROLLMENT_TOKENS.c.uses < ENROLLMENT_TOKENS.c.max_uses)
        result = connection.execute(
            update(ENROLLMENT_TOKENS).where(condition).values(uses=ENROLLMENT_TOKENS.c.uses + 1)
        )
        if result.rowcount != 1:
            raise AuthenticationFailed(
                "the enrollment token has no uses left: create a new one with "
                "`python -m controlserver enrollment-token`"
            )

    @staticmethod
    def _check_hardware(printer, request: schemas.RegisterRequest) -> None:
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

    def _ensure_assigned(
        self,
        connection: Connection,
        printer_id: str,
        current_name: str | None,
        placement: Placement,
        states: dict[str, FrontendState],
        now: datetime,
    ) -> str:
        """Keep the printer's frontend unless it is unhealthy, draining or gone; return the frontend."""
        current = states.get(current_name) if current_name else None
        if current is not None and _usable(current):
            return current.name

        reason = "new" if current_name is None else _why_leave(current)
        chosen = self._move(connection, printer_id, current_name, placement, states, reason, now)
        if chosen is not None:
            return chosen
        if current is not None:
            log.warning(
                "printer stays on its frontend: no other frontend has capacity",
                extra={"printer": printer_id, "frontend": current.name, "reason": reason},
            )
            return current.name
        raise CapacityExhausted(
            "capacity is exhausted: every healthy frontend is full or draining; "
            "add frontends or raise fleet_capacity, then retry"
        )

    def _reserve(
        self,
        connection: Connection,
        placement: Placement,
        states: dict[str, FrontendState],
        exclude: frozenset[str],
        reason: str,
    ) -> str | None:
        """Take one place on the best frontend with room and return its name, or None if all are full.

        The conditional UPDATE is the capacity check: it reserves a place only while
        `assigned < capacity` is true in the database, whatever the snapshot in `states` says.
        """
        for candidate in best_first(states, placement, self.settings.load_weight_ms, exclude, self._sites(states)):
            if self._reserve_place.rowcount(connection, {"b_frontend": candidate.name}) == 1:
                states[candidate.name] = candidate.with_assigned(candidate.assigned + 1)
                metrics.child(metrics.ASSIGNMENTS, candidate.name, reason).inc()
                return candidate.name
            # The snapshot was stale: the frontend is full or no longer usable.
            states[candidate.name] = candidate.with_assigned(candidate.capacity)
        return None

    @staticmethod
    def _release(connection: Connection, frontend: str, states: dict[str, FrontendState]) -> None:
        connection.execute(RELEASE_PLACE, {"b_frontend": frontend})
        if frontend in states:
            states[frontend] = states[frontend].with_assigned(states[frontend].assigned - 1)

    def _move(
        self,
        connection: Connection,
        printer_id: str,
        previous: str | None,
        placement: Placement,
        states: dict[str, FrontendState],
        reason: str,
        now: datetime,
        release_previous: bool = True,
    ) -> str | None:
        """Assign the printer to the best other frontend with room; return its name or None.

        With release_previous=False the caller gives back the place on `previous` itself.
        """
        exclude = frozenset({previous}) if previous else frozenset()
        chosen = self._reserve(connection, placement, states, exclude, reason)
        if chosen is None:
            return None
        if previous is not None and release_previous:
            self._release(connection, previous, states)
        connection.execute(
            update(PRINTERS).where(PRINTERS.c.id == printer_id).values(
                frontend=chosen, assigned_at=now, move_reason=reason, probe_failures=0, restart_share=False,
            )
        )
        if previous is not None:
            events.record_move(connection, printer_id, previous, chosen, reason, now)
            metrics.MOVES.labels(from_frontend=previous, reason=reason).inc()
            log.info("printer moved", extra={"printer": printer_id, "from_frontend": previous,
                                             "to_frontend": chosen, "reason": reason})
        else:
            log.info("printer assigned", extra={"printer": printer_id, "frontend": chosen})
        return chosen

    def _frontend_states(self, connection: Connection) -> dict[str, FrontendState]:
        """Return the frontends as the database had them at most STATES_MAX_AGE_S ago.

        The cache saves a query of every frontend per request. It is safe for capacity, because
        _reserve checks capacity in the database. A frontend that another replica marks unhealthy
        or draining gets no new assignments from this one after at most STATES_MAX_AGE_S.
        """
        cached = self._states_cache
        if cached is not None and time.monotonic() - cached[0] < STATES_MAX_AGE_S:
            return cached[1]
        rows = connection.execute(select(
            FRONTENDS.c.name, FRONTENDS.c.region, FRONTENDS.c.latitude, FRONTENDS.c.longitude,
            FRONTENDS.c.capacity, FRONTENDS.c.assigned, FRONTENDS.c.healthy, FRONTENDS.c.draining,
            FRONTENDS.c.in_inventory, FRONTENDS.c.api_endpoint, FRONTENDS.c.share_domain,
        )).all()
        states = {}
        for row in rows:
            # Without the admin secret no account can be made there, so it counts as unhealthy.
            healthy = bool(row.healthy) and self.zrok.has_admin_secret(row.name)
            states[row.name] = FrontendState(
                name=row.name, region=row.region, latitude=row.latitude, longitude=row.longitude,
                capacity=row.capacity, assigned=row.assigned, healthy=healthy, draining=bool(row.draining),
                in_inventory=bool(row.in_inventory), api_endpoint=row.api_endpoint,
                share_domain=row.share_domain,
            )
        self._states_cache = (time.monotonic(), states, sites_of(states.values()))
        return states

    def _sites(self, states: dict[str, FrontendState]) -> list[Site] | None:
        """Return the sites of the cached frontends if `states` is that cache, else None."""
        cached = self._states_cache
        return cached[2] if cached is not None and cached[1] is states else None

    def _state_of(self, connection: Connection, states: dict[str, FrontendState], name: str) -> FrontendState:
        """Return the frontend's state, rereading the frontends if another replica added it since."""
        if name not in states:
            self.invalidate_frontend_states()
            states = self._frontend_states(connection)
        return states[name]

    def invalidate_frontend_states(self) -> None:
        """Make the next request read the frontends from the database (after health or drain changes)."""
        self._states_cache = None

    # -- assignment objects and zrok accounts ----------------------------------------------

    def _assigned_printer(self, connection: Connection, printer_id: str, share_password: str,
                          frontend: FrontendState) -> AssignedPrinter:
        account_token = connection.scalar(SELECT_ACCOUNT, {"b_printer": printer_id, "b_frontend": frontend.name})
        if account_token is None:
            account_token = self._claim_pooled_account(connection, printer_id, frontend.name)
        return AssignedPrinter(printer_id, share_password, frontend, account_token)

    def _claim_pooled_account(self, connection: Connection, printer_id: str, frontend: str) -> str | None:
        """Give the printer an account from the frontend's pool; return its token, or None if empty."""
        claimed = self._claim_pooled.first(connection, {"b_frontend": frontend})
        if claimed is None:
            return None
        self._insert_pooled_account.rowcount(connection, {
            "printer_id": printer_id, "frontend": frontend, "email": claimed.email,
            "account_token": claimed.account_token, "created_at": utcnow()})
        return claimed.account_token

    def assignment(self, assigned: AssignedPrinter) -> schemas.Assignment:
        """Build the printer's assignment, creating its zrok account now if none was at hand."""
        frontend = assigned.frontend
        account_token = assigned.account_token
        if account_token is None:
            email = self.zrok.email_for(assigned.printer_id)
            try:
                created = self.zrok.create_account(frontend.name, frontend.api_endpoint, email)
            except ZrokAccountFailed:
                metrics.ZROK_ACCOUNT_FAILURES.labels(frontend=frontend.name).inc()
                raise
            metrics.ZROK_ACCOUNTS.labels(frontend=frontend.name).inc()
            log.info("zrok account created", extra={"printer": assigned.printer_id, "frontend": frontend.name})
            account_token = self._store_account(assigned.printer_id, frontend.name, created.email,
                                                created.account_token)

        share_name = share_name_for(assigned.printer_id)
        # Validated from a dict, which pydantic's core does in less than half the time that
        # model_construct() takes for the two models (9 against 20 us per registration).
        return schemas.Assignment.model_validate({
            "frontend": frontend.name,
            "region": frontend.region,
            "api_endpoint": frontend.api_endpoint,
            "share_name": share_name,
            "public_url": f"https://{share_name}.{frontend.share_domain}",
            "account_token": account_token,
            "share_auth": {
                "mode": "basic", "username": self.settings.share_auth_username, "password": assigned.share_password,
            },
        })

    def _store_account(self, printer_id: str, frontend: str, email: str, account_token: str) -> str:
        with self.db.write() as connection:
            inserted = connection.execute(self._insert_account, {
                "printer_id": printer_id, "frontend": frontend, "email": email, "account_token": account_token,
                "created_at": utcnow(),
            }).first() is not None
            if inserted:
                return account_token
            # A concurrent request of the same printer stored one first; keep that one.
            return connection.scalar(
                select(ZROK_ACCOUNTS.c.account_token)
                .where(ZROK_ACCOUNTS.c.printer_id == printer_id, ZROK_ACCOUNTS.c.frontend == frontend)
            )

    # -- heartbeats ------------------------------------------------------------------------

    def heartbeat(self, bearer: str, printer_id: str, request: schemas.HeartbeatRequest) -> schemas.HeartbeatResponse:
        """Record the agent's state and return the action, the assignment and candidates."""
        return self.heartbeat_response(self.heartbeat_in_database(bearer, printer_id, request))

    def heartbeat_in_database(self, bearer: str, printer_id: str, request: schemas.HeartbeatRequest) -> HeartbeatDecision:
        """Record the heartbeat and decide the action in a transaction of its own."""
        with self.db.write() as connection:
            return self.heartbeat_in_transaction(connection, bearer, printer_id, request)

    def heartbeat_in_transaction(self, connection: Connection, bearer: str, printer_id: str,
                                 request: schemas.HeartbeatRequest) -> HeartbeatDecision:
        """Record the heartbeat and decide the action in the caller's transaction."""
        if not bearer.startswith(PRINTER_TOKEN_PREFIX):
            raise AuthenticationFailed(
                "the bearer token is not a printer token: send the printer token from the registration"
            )
        token_hash = hash_token(bearer)
        now = utcnow()
        printer = connection.execute(
            _printer_columns(PRINTERS.c.restart_share, PRINTERS.c.move_reason)
            .where(PRINTERS.c.token_hash == token_hash).with_for_update()
        ).first()
        if printer is None:
            raise AuthenticationFailed(
                "the bearer token is not a valid printer token: register again with an enrollment token"
            )
        if printer.id != printer_id:
            raise Forbidden(
                f"this printer token belongs to printer {printer.id}, not {printer_id}: "
                "a printer may only send its own heartbeat"
            )

        latency = {k: float(v) for k, v in request.latency_ms.items()} or printer.latency_ms
        values = dict(
            last_heartbeat_at=now, reported_frontend=request.frontend, share_state=request.share_state,
            share_token=request.share_token, moonraker_state=request.moonraker_state,
            klippy_state=request.klippy_state, latency_ms=latency,
        )
        if request.agent_version:
            values["agent_version"] = request.agent_version

        states = self._frontend_states(connection)
        placement = Placement(printer.latitude, printer.longitude, printer.region, latency)
        frontend = printer.frontend
        if frontend is None:
            frontend = self._ensure_assigned(connection, printer_id, None, placement, states, now)
        action, reason = _decide(frontend, printer.move_reason, printer.restart_share, request, states)
        if action == "restart_share":
            values.update(restart_share=False, probe_failures=0)
        connection.execute(update(PRINTERS).where(PRINTERS.c.id == printer_id).values(**values))
        assigned = self._assigned_printer(connection, printer_id, printer.share_password,
                                          self._state_of(connection, states, frontend))

        if action != "stay":
            log.info("heartbeat answered", extra={"printer": printer_id, "frontend": frontend,
                                                  "action": action, "reason": reason})
        metrics.child(metrics.HEARTBEAT_ACTIONS, action).inc()

        candidates = [
            schemas.Candidate(frontend=state.name, api_endpoint=state.api_endpoint)
            for state in best_few(CANDIDATE_COUNT, list(states.values()), placement,
                                  self.settings.load_weight_ms, frozenset({frontend}))
        ]
        return HeartbeatDecision(action, reason, assigned, candidates)

    def heartbeat_response(self, decision: HeartbeatDecision) -> schemas.HeartbeatResponse:
        """Build the heartbeat response, calling the zrok admin API if no account is at hand."""
        return schemas.HeartbeatResponse(
            action=decision.action,
            reason=decision.reason,
            assignment=self.assignment(decision.assigned),
            heartbeat_interval_s=self.settings.heartbeat_interval_s,
            candidates=decision.candidates,
        )

    # -- batched moves ---------------------------------------------------------------------

    def move_batch(self) -> int:
        """Move up to move_batch_size printers off unhealthy, draining or removed frontends.

        Returns how many moved. Printers move only when they have a reason to; a recovered or
        new frontend takes new registrations and moved printers, but no printer is moved onto it
        just because it is emptier.
        """
        now = utcnow()
        moved = 0
        with self.db.write() as connection:
            self.invalidate_frontend_states()
            states = self._frontend_states(connection)
            leaving = [name for name, state in states.items() if not _usable(state)]
            if not leaving:
                return 0
            # Lock order on PostgreSQL, the same as a registration's: printer rows, then the
            # frontend rows that gain a printer, then the ones that lose it. So the batch locks its
            # printers first, skipping those that a registration or heartbeat holds right now,
            # and gives back the places on the leaving frontends at the end. Locking a leaving
            # frontend after the first move and then waiting for a target deadlocks with a
            # registration that holds that target and waits for the leaving frontend.
            printers = connection.execute(
                _printer_columns().where(PRINTERS.c.frontend.in_(leaving))
                .order_by(PRINTERS.c.assigned_at, PRINTERS.c.id).limit(self.settings.move_batch_size)
                .with_for_update(skip_locked=True)
            ).all()
            released: dict[str, int] = {}
            for printer in printers:
                placement = Placement(printer.latitude, printer.longitude, printer.region, printer.latency_ms)
                reason = _why_leave(states[printer.frontend])
                chosen = self._move(connection, printer.id, printer.frontend, placement, states, reason, now,
                                    release_previous=False)
                if chosen is None:
                    log.warning("moves stopped: no frontend has capacity left",
                                extra={"count": len(printers) - moved})
                    break
                released[printer.frontend] = released.get(printer.frontend, 0) + 1
                moved += 1
            for frontend in sorted(released):
                connection.execute(update(FRONTENDS).where(FRONTENDS.c.name == frontend)
                                   .values(assigned=FRONTENDS.c.assigned - released[frontend]))
        if moved:
            log.info("move batch done", extra={"moved": moved})
        return moved

    # -- zrok account pool ----------------------------------------------------------------

    def refill_account_pools(self) -> int:
        """Create zrok accounts ahead of demand so assignments need no admin API call.

        Each usable frontend gets up to zrok_account_pool_size unclaimed accounts, never more than
        its free capacity. Returns how many accounts were created. A frontend whose admin API
        fails is skipped until the next round.
        """
        target = self.settings.zrok_account_pool_size
        if target <= 0:
            return 0
        with self.db.read() as session:
            pooled = dict(session.execute(
                select(ACCOUNT_POOL.c.frontend, func.count()).group_by(ACCOUNT_POOL.c.frontend)).all())
            frontends = session.execute(select(
                FRONTENDS.c.name, FRONTENDS.c.api_endpoint, FRONTENDS.c.capacity, FRONTENDS.c.assigned,
                FRONTENDS.c.healthy, FRONTENDS.c.draining, FRONTENDS.c.in_inventory,
            )).all()

        created = 0
        for frontend in frontends:
            if not (frontend.healthy and frontend.in_inventory and not frontend.draining):
                continue
            if not self.zrok.has_admin_secret(frontend.name):
                continue
            missing = min(target, max(0, frontend.capacity - frontend.assigned)) - pooled.get(frontend.name, 0)
            if missing <= 0:
                continue
            accounts = []
            try:
                for _ in range(missing):
                    email = self.zrok.pool_email()
                    accounts.append(self.zrok.create_account(frontend.name, frontend.api_endpoint, email))
            except ZrokAccountFailed as exc:
                metrics.ZROK_ACCOUNT_FAILURES.labels(frontend=frontend.name).inc()
                log.warning("zrok account pool refill failed; retrying next round",
                            extra={"frontend": frontend.name, "error": exc.message})
            if accounts:
                now = utcnow()
                with self.db.write() as connection:
                    connection.execute(insert(ACCOUNT_POOL), [
                        {"frontend": frontend.name, "email": account.email, "account_token": account.account_token,
                         "created_at": now} for account in accounts])
                metrics.ZROK_ACCOUNTS.labels(frontend=frontend.name).inc(len(accounts))
                created += len(accounts)
        if created:
            log.info("zrok account pools refilled", extra={"count": created})
        return created

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

    def get_printer(self, printer_id: str) -> schemas.PrinterView:
        printer, frontend = self._printer_with_frontend(printer_id)
        return _printer_view(printer, frontend.share_domain if frontend else None)

    def printer_access(self, printer_id: str, identity: Identity) -> schemas.PrinterAccess:
        """Return the printer's public URL and credentials, and log who asked (never the credentials)."""
        printer, frontend = self._printer_with_frontend(printer_id)
        view = _printer_view(printer, frontend.share_domain if frontend else None)
        access = schemas.PrinterAccess(
            **view.model_dump(),
            share_auth=schemas.ShareAuth(mode="basic", username=self.settings.share_auth_username,
                                         password=printer.share_password),
            moonraker_api_key=printer.moonraker_api_key,
            warnings=access_warnings(printer, frontend, self.settings.heartbeat_overdue_after_s),
        )
        metrics.PRINTER_ACCESS.labels(role=identity.role).inc()
        log.info("printer access granted", extra={"printer": printer_id, "frontend": printer.frontend,
                                                  "operator": identity.name, "role": str(identity.role)})
        return access

    def _printer_with_frontend(self, printer_id: str) -> tuple[Printer, Frontend | None]:
        with self.db.read() as session:
            printer = session.get(Printer, printer_id)
            if printer is None:
                raise NotFound(f"printer {printer_id} is not registered: check the id with GET /v1/printers")
            frontend = session.get(Frontend, printer.frontend) if printer.frontend else None
        return printer, frontend

    def delete_printer(self, printer_id: str) -> None:
        self.invalidate_frontend_states()
        with self.db.write_session() as session:
            printer = session.get(Printer, printer_id)
            if printer is None:
                raise NotFound(f"printer {printer_id} is not registered: check the id with GET /v1/printers")
            if printer.frontend is not None:
                session.execute(update(Frontend).where(Frontend.name == printer.frontend)
                                .values(assigned=Frontend.assigned - 1))
            session.execute(delete(ZrokAccount).where(ZrokAccount.printer_id == printer_id))
            session.delete(printer)
        # NOTE: the printer's zrok accounts stay on the instances; delete them with
        # `zrok2 admin delete account <printer>-<random>@<domain>` when the hardware is retired.
        log.info("printer deleted", extra={"printer": printer_id})

    def list_frontends(self) -> schemas.FrontendList:
        with self.db.read() as session:
            rows = session.scalars(select(Frontend).order_by(Frontend.name)).all()
        return schemas.FrontendList(frontends=[self._frontend_view(row) for row in rows])

    def set_draining(self, name: str, draining: bool) -> schemas.FrontendView:
        self.invalidate_frontend_states()
        with self.db.write_session() as session:
            row = session.get(Frontend, name)
            if row is None:
                raise NotFound(f"frontend {name} is not in the inventory: check the name with GET /v1/frontends")
            if row.draining != draining:
                row.draining = draining
                row.state_changed_at = utcnow()
                events.record_frontend(session, events.DRAIN if draining else events.UNDRAIN, name,
                                       count=row.assigned)
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

    def counts(self) -> tuple[list[tuple[str | None, str | None, int]], list[Frontend], dict[str, int]]:
        """Return printer counts per frontend and share state, all frontends and the pooled
        accounts per frontend, for /metrics."""
        with self.db.read() as session:
            per_state = session.execute(
                select(Printer.frontend, Printer.share_state, func.count()).group_by(Printer.frontend, Printer.share_state)
            ).all()
            frontends = session.scalars(select(Frontend)).all()
            pooled = dict(session.execute(
                select(ACCOUNT_POOL.c.frontend, func.count()).group_by(ACCOUNT_POOL.c.frontend)).all())
        return [tuple(row) for row in per_state], list(frontends), pooled


def share_name_for(printer_id: str) -> str:
    # schemas.PRINTER_ID_PATTERN limits ids to 61 characters, so this fits in one DNS label (63).
    return f"p-{printer_id}"


def _details(request: schemas.RegisterRequest) -> dict:
    """Return the optional registration fields that the printer sent."""
    values = {}
    if request.latitude is not None and request.longitude is not None:
        values["latitude"], values["longitude"] = request.latitude, request.longitude
    for field in ("region", "agent_version", "moonraker_version", "moonraker_api_key"):
        value = getattr(request, field)
        if value is not None:
            values[field] = value
    return values


def _printer_columns(*extra):
    return select(
        PRINTERS.c.id, PRINTERS.c.hardware_id, PRINTERS.c.frontend, PRINTERS.c.share_password,
        PRINTERS.c.latitude, PRINTERS.c.longitude, PRINTERS.c.region, PRINTERS.c.latency_ms, *extra,
    )


def _usable(state: FrontendState) -> bool:
    return state.in_inventory and state.healthy and not state.draining


def _decide(
    frontend: str,
    move_reason: str | None,
    restart_share: bool,
    request: schemas.HeartbeatRequest,
    states: dict[str, FrontendState],
) -> tuple[str, str]:
    """Choose the heartbeat's action: move if the agent is not on its assigned frontend, restart
    its share if the outside probe failed, else stay."""
    if request.frontend != frontend:
        return "move", f"assigned to frontend {frontend} ({_MOVE_REASONS.get(move_reason or '', 'reassigned')})"
    if restart_share:
        return "restart_share", "the public URL of the share failed the outside probe"
    state = states.get(frontend)
    if state is not None and not _usable(state):
        return "stay", f"frontend {frontend} is {_why_leave(state)}; a move is queued"
    return "stay", ""


# Heartbeat messages for the move reasons that _why_leave and registration store.
_MOVE_REASONS = {
    "new": "first assignment",
    "removed": "the previous frontend was removed from the inventory",
    "draining": "the previous frontend is draining",
    "unhealthy": "the previous frontend is unhealthy",
    "rebalance": "rebalanced",
}


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
