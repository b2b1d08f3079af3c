"""Where spendwatch keeps its files, and the settings read from the environment.

Everything has a working default; environment variables override (DESIGN.md, Configuration).
Secrets are read here and nowhere else, and are never logged.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HOME = ".spendwatch"


def home() -> Path:
    """`$SPENDWATCH_HOME` as an absolute path (default `./.spendwatch`)."""
    return Path(os.environ.get("SPENDWATCH_HOME") or DEFAULT_HOME).expanduser().resolve()


@dataclass(frozen=True)
class Paths:
    """The files and folders under one spendwatch home."""

    home: Path

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def landing(self) -> Path:
        return self.home / "landing" / "calls"

    @property
    def spark(self) -> Path:
        """The Spark target's tables (warehouse/) and catalog (metastore_db/)."""
        return self.home / "spark"

    @property
    def built(self) -> bool:
        """Whether the warehouse of the current target exists (a DuckDB file, or the Spark
        catalog)."""
        if target() == "spark":
            return (self.spark / "metastore_db").exists()
        return self.warehouse.exists()

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def report(self) -> Path:
        """The dashboard `spendwatch report` and the `spend_report` asset write."""
        return self.home / "report.html"


#: The dbt targets spendwatch builds on (profiles.yml): the embedded default and Spark.
TARGETS = ("duckdb", "spark")


def target() -> str:
    """The warehouse engine: `$SPENDWATCH_TARGET` (default `duckdb`), one of TARGETS. dbt's
    profile reads the same variable, so the CLI, the Dagster code location and dbt agree."""
    name = (os.environ.get("SPENDWATCH_TARGET") or "duckdb").strip().lower()
    if name not in TARGETS:
        raise ValueError(f"SPENDWATCH_TARGET={name!r}: choose one of {', '.join(TARGETS)}")
    return name


def paths(home_dir: str | os.PathLike | None = None) -> Paths:
    return Paths(Path(home_dir).expanduser().resolve() if home_dir else home())


#: What spendwatch needs of the Dagster instance (all state stays in $DAGSTER_HOME otherwise):
#: - one writer at a time: runs tagged spendwatch/warehouse=write (the pipeline, the seeds, the
#:   alerts) are started one after another by the run queue — DuckDB admits one writing process;
#: - a run that failed (a lock it waited for too long, a crash) is tried again, twice;
#: - a run whose worker process died is marked failed, so it does not hold the queue forever.
INSTANCE_CONFIG = {
    "telemetry": {"enabled": False},
    "concurrency": {
        "runs": {
            "tag_concurrency_limits": [
                {"key": "spendwatch/warehouse", "value": "write", "limit": 1}
            ]
        }
    },
    "run_retries": {"enabled": True, "max_retries": 2},
    "run_monitoring": {"enabled": True, "start_timeout_seconds": 180, "poll_interval_seconds": 60},
}


def write_instance_config(path: Path) -> None:
    """Write the instance's dagster.yaml, or add what spendwatch needs to a user's own file
    (their keys are kept; a key spendwatch needs that they set differently is left alone)."""
    import yaml

    current = yaml.safe_load(path.read_text()) if path.exists() else None
    current = current if isinstance(current, dict) else {}
    merged = {**INSTANCE_CONFIG, **current}
    if merged != current or not path.exists():
        path.write_text(
            "# Written by spendwatch (spendwatch.config.INSTANCE_CONFIG); your own keys are kept.\n"
            + yaml.safe_dump(merged, sort_keys=False)
        )


def export_environment(p: Paths) -> None:
    """Make the home explicit for child processes (dbt, the Dagster webserver).

    dbt's profile reads `SPENDWATCH_HOME`; Dagster reads `DAGSTER_HOME`. Both are set to absolute
    paths so every process agrees on one warehouse file whatever its working directory.
    """
    p.home.mkdir(parents=True, exist_ok=True)
    p.dagster_home.mkdir(parents=True, exist_ok=True)
    write_instance_config(p.dagster_home / "dagster.yaml")
    os.environ["SPENDWATCH_HOME"] = str(p.home)
    os.environ["DAGSTER_HOME"] = str(p.dagster_home)


def _set_environ(values: Mapping[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@contextlib.contextmanager
def temporary_environ(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, for None, unset) environment variables inside the block; each is put back as it
    was afterwards. For what this process and the processes it starts inside the block see:
    dbt's window, a Dagster switch for one run."""
    before = {name: os.environ.get(name) for name in values}
    _set_environ(values)
    try:
        yield
    finally:
        _set_environ(before)


# --- alerting -------------------------------------------------------------------------------

#: The repository this package runs from (the dbt project, the routing file, the runbooks).
REPO_DIR = Path(__file__).resolve().parents[1]
DEFAULT_PAGERDUTY_URL = "https://events.pagerduty.com"
DEFAULT_DAGSTER_URL = "http://127.0.0.1:3000"


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


@dataclass(frozen=True)
class AlertSettings:
    """Where alerts go, from the environment. Secret fields are left out of `repr`, so printing
    or logging the settings never shows them."""

    slack_webhook_url: str | None = field(default=None, repr=False)
    pagerduty_routing_key: str | None = field(default=None, repr=False)
    pagerduty_url: str = DEFAULT_PAGERDUTY_URL
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    email_to: tuple[str, ...] = ()
    email_from: str | None = None
    runbook_base_url: str = (REPO_DIR / "docs" / "runbooks").as_uri() + "/"
    dagster_url: str = DEFAULT_DAGSTER_URL
    routing_file: Path = REPO_DIR / "alerting.yml"
    #: how long an alert run waits for the warehouse while another process writes it
    warehouse_wait_seconds: float = 600.0

    def secrets(self) -> list[str]:
        """Every secret value configured here (the redaction list for errors and logs)."""
        return [
            s for s in (self.slack_webhook_url, self.pagerduty_routing_key, self.smtp_password) if s
        ]


def alert_settings() -> AlertSettings:
    """Read the alerting settings from the environment (DESIGN.md, Configuration):

    `SPENDWATCH_SLACK_WEBHOOK_URL`, `SPENDWATCH_PAGERDUTY_ROUTING_KEY`,
    `SPENDWATCH_PAGERDUTY_URL` (base; events go to `<base>/v2/enqueue`), `SPENDWATCH_SMTP_HOST`,
    `SPENDWATCH_SMTP_PORT` (25; 465 = implicit TLS), `SPENDWATCH_SMTP_USER`,
    `SPENDWATCH_SMTP_PASSWORD`, `SPENDWATCH_ALERT_EMAIL_TO` (comma-separated),
    `SPENDWATCH_ALERT_EMAIL_FROM`, `SPENDWATCH_RUNBOOK_BASE_URL` (where `<detector>.md` is read;
    default this checkout's docs/runbooks), `SPENDWATCH_DAGSTER_URL` (links to runs),
    `SPENDWATCH_ALERT_ROUTING` (the routing file; default `alerting.yml` in the repository),
    `SPENDWATCH_WAREHOUSE_WAIT_SECONDS` (600).
    """
    port = _env("SPENDWATCH_SMTP_PORT") or "25"
    wait = _env("SPENDWATCH_WAREHOUSE_WAIT_SECONDS") or "600"
    for name, value in (
        ("SPENDWATCH_SMTP_PORT", port),
        ("SPENDWATCH_WAREHOUSE_WAIT_SECONDS", wait),
    ):
        try:
            float(value)
        except ValueError:
            raise ValueError(f"{name}={value!r} is not a number") from None
    base = _env("SPENDWATCH_RUNBOOK_BASE_URL") or AlertSettings.runbook_base_url
    routing = _env("SPENDWATCH_ALERT_ROUTING")
    return AlertSettings(
        slack_webhook_url=_env("SPENDWATCH_SLACK_WEBHOOK_URL"),
        pagerduty_routing_key=_env("SPENDWATCH_PAGERDUTY_ROUTING_KEY"),
        pagerduty_url=(_env("SPENDWATCH_PAGERDUTY_URL") or DEFAULT_PAGERDUTY_URL).rstrip("/"),
        smtp_host=_env("SPENDWATCH_SMTP_HOST"),
        smtp_port=int(float(port)),
        smtp_user=_env("SPENDWATCH_SMTP_USER"),
        smtp_password=_env("SPENDWATCH_SMTP_PASSWORD"),
        email_to=tuple(
            a.strip() for a in (_env("SPENDWATCH_ALERT_EMAIL_TO") or "").split(",") if a.strip()
        ),
        email_from=_env("SPENDWATCH_ALERT_EMAIL_FROM"),
        runbook_base_url=base if base.endswith("/") else base + "/",
        dagster_url=(_env("SPENDWATCH_DAGSTER_URL") or DEFAULT_DAGSTER_URL).rstrip("/"),
        routing_file=Path(routing).expanduser().resolve()
        if routing
        else AlertSettings.routing_file,
        warehouse_wait_seconds=float(wait),
    )


def secret_from_env(name: str) -> str | None:
    """A secret the routing file names by its environment variable (a team's own Slack
    webhook, a team's PagerDuty routing key): the file holds the variable's name, never the
    value."""
    return _env(name)


# --- metric exports (Datadog, CloudWatch) ---------------------------------------------------

DEFAULT_DATADOG_URL = "https://api.datadoghq.com"
#: the exports' destinations, in the order `spendwatch export --status` lists them
EXPORT_DESTINATIONS = ("datadog", "cloudwatch")


@dataclass(frozen=True)
class ExportSettings:
    """Where the hourly mart figures go as metrics, from the environment. The API key is left
    out of `repr`; AWS credentials and region are boto3's own (environment, ~/.aws, a role) and
    never pass through here."""

    datadog_api_key: str | None = field(default=None, repr=False)
    datadog_url: str = DEFAULT_DATADOG_URL
    cloudwatch_namespace: str | None = None
    cloudwatch_endpoint_url: str | None = None
    warehouse_wait_seconds: float = 600.0

    def missing(self, destination: str) -> str | None:
        """Why `destination` cannot be exported to (what to set), or None when it can."""
        if destination == "datadog":
            return None if self.datadog_api_key else "set SPENDWATCH_DATADOG_API_KEY"
        if destination == "cloudwatch":
            return None if self.cloudwatch_namespace else "set SPENDWATCH_CLOUDWATCH_NAMESPACE"
        raise ValueError(
            f"unknown export destination {destination!r}: choose one of "
            f"{', '.join(EXPORT_DESTINATIONS)}"
        )

    def configured(self) -> list[str]:
        return [d for d in EXPORT_DESTINATIONS if self.missing(d) is None]

    def secrets(self) -> list[str]:
        """Every secret an error text could quote: the Datadog key and the AWS secrets boto3
        reads from the environment (the redaction list)."""
        aws = (_env("AWS_SECRET_ACCESS_KEY"), _env("AWS_SESSION_TOKEN"))
        return [s for s in (self.datadog_api_key, *aws) if s]


def export_settings() -> ExportSettings:
    """Read the export settings from the environment (README, "Metrics in Datadog and
    CloudWatch"): `SPENDWATCH_DATADOG_API_KEY` (turns the Datadog export on),
    `SPENDWATCH_DATADOG_URL` (the site's API base, default https://api.datadoghq.com; series go
    to `<base>/api/v2/series`), `SPENDWATCH_CLOUDWATCH_NAMESPACE` (turns the CloudWatch export
    on, e.g. `LLM/Spend`), `SPENDWATCH_CLOUDWATCH_ENDPOINT_URL` (another endpoint, e.g. a VPC
    endpoint or an emulator), `SPENDWATCH_WAREHOUSE_WAIT_SECONDS` (600)."""
    wait = _env("SPENDWATCH_WAREHOUSE_WAIT_SECONDS") or "600"
    try:
        wait_seconds = float(wait)
    except ValueError:
        raise ValueError(f"SPENDWATCH_WAREHOUSE_WAIT_SECONDS={wait!r} is not a number") from None
    url = (_env("SPENDWATCH_DATADOG_URL") or DEFAULT_DATADOG_URL).rstrip("/")
    endpoint = _env("SPENDWATCH_CLOUDWATCH_ENDPOINT_URL")
    for name, value in (("SPENDWATCH_DATADOG_URL", url),
                        ("SPENDWATCH_CLOUDWATCH_ENDPOINT_URL", endpoint)):  # fmt: skip
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(f"{name}={value!r} is not an http(s) URL")
    return ExportSettings(
        datadog_api_key=_env("SPENDWATCH_DATADOG_API_KEY"),
        datadog_url=url,
        cloudwatch_namespace=_env("SPENDWATCH_CLOUDWATCH_NAMESPACE"),
        cloudwatch_endpoint_url=endpoint.rstrip("/") if endpoint else None,
        warehouse_wait_seconds=wait_seconds,
    )
