"""The routing file (`alerting.yml`): which channels hear about which incident, mutes, and the
knobs of the alert lifecycle. Validated with pydantic on every alert run; a mistake fails with
the file, the line and what to do, never with a traceback into the alert code.

Routes are read top to bottom and the first one whose `match` fits the incident decides its
channels; a route with `continue: true` adds its channels and lets later routes add theirs
(Alertmanager's rule). Every field of `match` is optional and may be one value or a list.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from spendwatch.config import REPO_DIR

Severity = Literal["warning", "critical"]
SEVERITY_RANK = {"warning": 1, "critical": 2}
ChannelType = Literal["slack", "pagerduty", "email"]
#: The channels that need no declaration: their settings come from the environment.
BUILTIN_CHANNELS: dict[str, str] = {"slack": "slack", "pagerduty": "pagerduty", "email": "email"}
DETECTORS_SEED = REPO_DIR / "seeds" / "detectors.csv"


class RoutingError(ValueError):
    """The routing file is missing or wrong; the message names the file, line and fix."""


def known_detectors() -> set[str]:
    """The detectors are the rows of the `detectors` seed (dbt checks it against the models)."""
    with DETECTORS_SEED.open(newline="") as f:
        return {row["detector"] for row in csv.DictReader(f)}


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _check_detectors(names: list[str], info: ValidationInfo) -> None:
    known = (info.context or {}).get("detectors")
    for name in names:
        if known is not None and name not in known:
            raise ValueError(
                f"unknown detector {name!r}; known: {', '.join(sorted(known))} (each has "
                "docs/runbooks/<detector>.md)"
            )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Match(_Strict):
    """Conditions on the incident; all given ones must hold."""

    severity: list[Severity] | None = None
    detector: list[str] | None = None
    feature: list[str] | None = None
    environment: list[str] | None = None
    team: list[str] | None = None  # the anomaly's team_id, else the feature's owner (`owners`)

    _lists = field_validator("severity", "detector", "feature", "environment", "team",
                             mode="before")(_as_list)  # fmt: skip

    @field_validator("detector")
    @classmethod
    def _known_detector(cls, value: list[str] | None, info: ValidationInfo):
        _check_detectors(value or [], info)
        return value


class Route(_Strict):
    match: Match = Match()
    channels: list[str]
    continue_: bool = Field(False, alias="continue")

    _lists = field_validator("channels", mode="before")(_as_list)


class ChannelSpec(_Strict):
    """A named destination beside the built-in ones, e.g. a team's own Slack webhook. Secrets
    are named by the environment variable that holds them, never written here."""

    type: ChannelType
    webhook_url_env: str | None = None  # slack
    routing_key_env: str | None = None  # pagerduty
    to: list[str] | None = None  # email (the SMTP server is the global one)

    _lists = field_validator("to", mode="before")(_as_list)

    @model_validator(mode="after")
    def _complete(self) -> ChannelSpec:
        needed = {"slack": "webhook_url_env", "pagerduty": "routing_key_env", "email": "to"}
        field_name = needed[self.type]
        if not getattr(self, field_name):
            raise ValueError(f"a {self.type} channel needs `{field_name}`")
        for other in set(needed.values()) - {field_name}:
            if getattr(self, other):
                raise ValueError(f"`{other}` does not apply to a {self.type} channel")
        return self


class Mute(_Strict):
    """Silence incidents of a feature and/or detector until a time (UTC if no offset)."""

    feature: str | None = None
    detector: str | None = None
    environment: str | None = None
    until: datetime
    reason: str = ""

    @field_validator("detector")
    @classmethod
    def _known_detector(cls, value: str | None, info: ValidationInfo):
        _check_detectors([value] if value else [], info)
        return value

    @field_validator("until")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)

    @model_validator(mode="after")
    def _scoped(self) -> Mute:
        if not (self.feature or self.detector):
            raise ValueError("a mute needs a feature, a detector or both")
        return self


class Retry(_Strict):
    initial_seconds: float = Field(30, gt=0)
    max_seconds: float = Field(1800, gt=0)
    max_attempts: int = Field(12, ge=1)

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th failed attempt (exponential, capped)."""
        return min(self.max_seconds, self.initial_seconds * 2 ** max(attempts - 1, 0))


class Settings(_Strict):
    stale_after_hours: float = Field(6, gt=0)
    storm_threshold: int = Field(5, ge=1)
    resolve_after_quiet_hours: int = Field(2, ge=1)
    suppression_hours: dict[str, float] = Field(default_factory=dict)
    #: per-detector overrides of stale_after_hours / resolve_after_quiet_hours, for detectors
    #: whose findings arrive after the fact (invoice_drift: a day found when a report is
    #: imported, days later, and over only when its rows leave the mart)
    stale_after_hours_by_detector: dict[str, float] = Field(default_factory=dict)
    resolve_after_quiet_hours_by_detector: dict[str, int] = Field(default_factory=dict)
    lease_seconds: float = Field(900, gt=0)
    retry: Retry = Retry()

    @field_validator("stale_after_hours_by_detector", "resolve_after_quiet_hours_by_detector")
    @classmethod
    def _known_detectors(cls, value: dict, info: ValidationInfo):
        known = (info.context or {}).get("detectors")
        for name, hours in value.items():
            if known is not None and name not in known:
                raise ValueError(f"unknown detector {name!r}")
            if hours <= 0:
                raise ValueError(f"{name}: hours must be > 0")
        return value

    def stale_hours(self, detector: str | None) -> float:
        return self.stale_after_hours_by_detector.get(detector or "", self.stale_after_hours)

    def quiet_hours(self, detector: str | None) -> int:
        return self.resolve_after_quiet_hours_by_detector.get(
            detector or "", self.resolve_after_quiet_hours
        )

    @field_validator("suppression_hours")
    @classmethod
    def _known_keys(cls, value: dict[str, float], info: ValidationInfo):
        known = (info.context or {}).get("detectors")
        for name, hours in value.items():
            if name != "default" and known is not None and name not in known:
                raise ValueError(f"unknown detector {name!r} (or `default`)")
            if hours < 0:
                raise ValueError(f"{name}: hours must be ≥ 0")
        return value

    def suppression_seconds(self, detector: str) -> float:
        return 3600 * self.suppression_hours.get(detector, self.suppression_hours.get("default", 0))


class RoutingFile(_Strict):
    settings: Settings = Settings()
    channels: dict[str, ChannelSpec] = Field(default_factory=dict)
    owners: dict[str, str] = Field(default_factory=dict)  # feature → team
    routes: list[Route] = Field(min_length=1)
    mutes: list[Mute] = Field(default_factory=list)


@dataclass(frozen=True)
class Routing:
    """A validated routing file."""

    path: Path
    spec: RoutingFile

    @property
    def settings(self) -> Settings:
        return self.spec.settings

    def channel_type(self, channel: str) -> str:
        if channel in self.spec.channels:
            return self.spec.channels[channel].type
        return BUILTIN_CHANNELS[channel]

    def channel_names(self) -> list[str]:
        """Every channel a route names, in the order routes name them."""
        names: list[str] = []
        for route in self.spec.routes:
            names += [c for c in route.channels if c not in names]
        return names

    def team_of(self, feature: str | None, team_id: str | None) -> str | None:
        return team_id or (self.spec.owners.get(feature) if feature else None)

    def channels_for(
        self, severity: str, detector: str, feature: str | None, environment: str | None,
        team_id: str | None,
    ) -> list[str]:  # fmt: skip
        """The channels an incident of this severity and dimension goes to."""
        team = self.team_of(feature, team_id)
        found: list[str] = []
        for route in self.spec.routes:
            m = route.match
            if (
                (m.severity is None or severity in m.severity)
                and (m.detector is None or detector in m.detector)
                and (m.feature is None or feature in m.feature)
                and (m.environment is None or environment in m.environment)
                and (m.team is None or team in m.team)
            ):
                found += [c for c in route.channels if c not in found]
                if not route.continue_:
                    break
        return found

    def active_mutes(self, now: datetime) -> list[Mute]:
        return [m for m in self.spec.mutes if m.until > now]


def mute_matches(
    mute_feature: str | None, mute_detector: str | None, mute_environment: str | None,
    feature: str | None, detector: str, environment: str | None,
) -> bool:  # fmt: skip
    return (
        (mute_feature is None or mute_feature == feature)
        and (mute_detector is None or mute_detector == detector)
        and (mute_environment is None or mute_environment == environment)
    )


def load_routing(path: Path) -> Routing:
    """Read and validate a routing file; RoutingError names the line of the first mistake."""
    if not path.is_file():
        raise RoutingError(
            f"routing file {path} not found: restore alerting.yml from the repository or point "
            "SPENDWATCH_ALERT_ROUTING at your own"
        )
    text = path.read_text()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RoutingError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RoutingError(f"{path}:1: expected a mapping with `routes:` at the top")
    try:
        spec = RoutingFile.model_validate(data, context={"detectors": known_detectors()})
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(p for p in err["loc"] if not str(p).startswith("function-"))
        where = ".".join(str(p) for p in loc) or "(top)"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = f"unknown key {loc[-1]!r}"
        elif err["type"] == "literal_error":
            message = f"{err.get('input')!r} is not one of {err['ctx']['expected']}"
        raise RoutingError(f"{path}:{_line(node, loc)}: {where}: {message}") from None
    declared = set(spec.channels)
    clash = declared & set(BUILTIN_CHANNELS)
    if clash:
        name = sorted(clash)[0]
        raise RoutingError(
            f"{path}:{_line(node, ('channels', name))}: channels.{name}: {name!r} is a built-in "
            "channel configured from the environment; give yours another name"
        )
    for i, route in enumerate(spec.routes):
        for j, channel in enumerate(route.channels):
            if channel not in BUILTIN_CHANNELS and channel not in declared:
                raise RoutingError(
                    f"{path}:{_line(node, ('routes', i, 'channels', j))}: routes.{i}.channels: "
                    f"unknown channel {channel!r}; use slack, pagerduty, email or one declared "
                    "under `channels:`"
                )
    for name, channel in spec.channels.items():
        env = channel.webhook_url_env or channel.routing_key_env
        if env and not re.fullmatch(r"[A-Z_][A-Z0-9_]*", env):
            raise RoutingError(
                f"{path}:{_line(node, ('channels', name))}: channels.{name}: the value of "
                f"{'webhook_url_env' if channel.webhook_url_env else 'routing_key_env'} is not "
                "the name of an environment variable: write the variable's name (e.g. "
                "SPENDWATCH_SLACK_WEBHOOK_DOCS), never the secret itself"
            )
    return Routing(path, spec)


def _line(node: yaml.Node | None, loc: tuple) -> int:
    """1-based line of the YAML node at `loc` (or of its deepest existing parent)."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if str(k.value) == str(part)), None)
            key = next((k for k, _ in node.value if str(k.value) == str(part)), None)
            if nxt is None:
                break
            node, line = nxt, (key.start_mark.line + 1 if key is not None else line)
            if not isinstance(node, yaml.ScalarNode):
                continue
            line = node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line
