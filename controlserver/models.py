"""Database tables. The schema is created and changed only through the Alembic migrations."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime, also on SQLite, which stores datetimes without a zone."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given: use controlserver.models.utcnow()")
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Frontend(Base):
    """A zrok instance from the inventory, with its health and drain state."""

    __tablename__ = "frontends"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    region: Mapped[str] = mapped_column(String(128))
    location: Mapped[str] = mapped_column(String(64))
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)
    capacity: Mapped[int] = mapped_column(Integer)
    api_endpoint: Mapped[str] = mapped_column(String(512))
    share_domain: Mapped[str] = mapped_column(String(255))
    health_url: Mapped[str] = mapped_column(String(512))
    # False once the frontend left the inventory: its printers are moved away.
    in_inventory: Mapped[bool] = mapped_column(Boolean, default=True)
    healthy: Mapped[bool] = mapped_column(Boolean, default=True)
    draining: Mapped[bool] = mapped_column(Boolean, default=False)
    # Printers whose assignment names this frontend; changed only together with printers.frontend.
    assigned: Mapped[int] = mapped_column(Integer, default=0)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    consecutive_successes: Mapped[int] = mapped_column(Integer, default=0)
    last_probe_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_probe_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    health_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # When health, drain or inventory membership last changed; None for changes made before the
    # column existed (migration 0003).
    state_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Printer(Base):
    """An enrolled printer, its assignment and what its agent and the probes last reported."""

    __tablename__ = "printers"

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    hardware_id: Mapped[str] = mapped_column(String(128))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    frontend: Mapped[str | None] = mapped_column(
        ForeignKey("frontends.name"), index=True, nullable=True
    )
    latitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    longitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    region: Mapped[str | None] = mapped_column(String(128), nullable=True)
    agent_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    moonraker_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # NOTE: kept in clear text because the probes and operators need them; protect the database
    # file like the secrets file.
    moonraker_api_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    share_password: Mapped[str] = mapped_column(String(64))
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime)
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    move_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)

    last_heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reported_frontend: Mapped[str | None] = mapped_column(String(128), nullable=True)
    share_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    share_token: Mapped[str | None] = mapped_column(String(128), nullable=True)
    moonraker_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    klippy_state: Mapped[str | None] = mapped_column(String(32), nullable=True)
    latency_ms: Mapped[dict | None] = mapped_column(JSON, nullable=True)

    probe_failures: Mapped[int] = mapped_column(Integer, default=0)
    last_probe_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_probe_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    restart_share: Mapped[bool] = mapped_column(Boolean, default=False)


class ZrokAccount(Base):
    """A printer's zrok account on one frontend, kept so that a printer moving back reuses it."""

    __tablename__ = "zrok_accounts"

    printer_id: Mapped[str] = mapped_column(
        ForeignKey("printers.id", ondelete="CASCADE"), primary_key=True
    )
    frontend: Mapped[str] = mapped_column(String(128), primary_key=True)
    email: Mapped[str] = mapped_column(String(255))
    # The agent needs the token itself to run `zrok2 enable`, so it cannot be stored hashed.
    account_token: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class EnrollmentToken(Base):
    """A token that lets printers enroll; only its SHA-256 hash is stored."""

    __tablename__ = "enrollment_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    max_uses: Mapped[int | None] = mapped_column(Integer, nullable=True)
    uses: Mapped[int] = mapped_column(Integer, default=0)


class Lease(Base):
    """A named lease: the replica holding `monitor` runs the health probes and batched moves."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PooledZrokAccount(Base):
    """A zrok account created ahead of demand; assigning a printer to the frontend claims one."""

    __tablename__ = "zrok_account_pool"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    frontend: Mapped[str] = mapped_column(String(128), index=True)
    email: Mapped[str] = mapped_column(String(255))
    account_token: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class FleetEvent(Base):
    """A change of an assignment or of a frontend's state, shown in the dashboard's event list.

    `kind` is one of controlserver.services.events.EVENT_KINDS. A move names the printer, the
    frontend it left (`from_frontend`) and the one it went to (`frontend`). A frontend event names
    the frontend and how many printers it had (`count`).
    """

    __tablename__ = "fleet_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(16))
    frontend: Mapped[str | None] = mapped_column(String(128), nullable=True)
    from_frontend: Mapped[str | None] = mapped_column(String(128), nullable=True)
    printer_id: Mapped[str | None] = mapped_column(String(63), nullable=True)
    reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    detail: Mapped[str | None] = mapped_column(String(300), nullable=True)
