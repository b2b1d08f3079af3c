"""spendwatch: LLM token spend as a measured engineering metric.

Importing this package is cheap and never imports Dagster, dbt or pandas: applications import
it to record calls. The warehouse side lives in `orchestration` and the CLI.
"""

from spendwatch.schema import SCHEMA_VERSION, CallEvent
from spendwatch.tracker import Tracker, scope, track_anthropic, track_openai

__all__ = ["CallEvent", "SCHEMA_VERSION", "Tracker", "scope", "track_anthropic", "track_openai"]
__version__ = "0.1.0"
