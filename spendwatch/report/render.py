"""The page: template + styles + Plotly + the page's script + the data, in one file.

The data goes in a `<script type="application/json">` block, JSON-encoded with `<`, `>` and
`&` written as `\\u003c`, `\\u003e`, `\\u0026`, so no string from the warehouse can close the
block or start markup. A Content-Security-Policy admits exactly the two inline scripts (by
their SHA-256) and no network source at all: `default-src 'none'`, so the page cannot load
or send anything even if a string slipped through, and inline event handlers never run.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from functools import cache
from importlib import resources

_PLACEHOLDER = re.compile(r"\{\{([A-Z]+)\}\}")


@cache
def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


@cache
def plotly_js() -> str:
    """plotly.min.js as the plotly wheel ships it (no CDN, no network)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def embed_json(data: object) -> str:
    """JSON safe inside a `<script>` element: no `</script>`, no `<!--`, no markup at all."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (
        text.replace("&", "\\u0026")
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _script_hash(source: str) -> str:
    if "</script" in source.lower():
        raise ValueError("an inline script may not contain '</script'")
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def content_security_policy(*scripts: str) -> str:
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {' '.join(_script_hash(s) for s in scripts)}",
            "style-src 'unsafe-inline'",  # Plotly styles its SVG inline
            "img-src data: blob:",  # Plotly's "download as PNG"
            "font-src 'none'",
            "connect-src 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )


def render(data: dict) -> str:
    plotly = plotly_js()
    app = _asset("report.js")
    meta = data["meta"]
    scope = meta["environment"] or "all environments"
    values = {
        "CSP": html.escape(content_security_policy(plotly, app), quote=False),  # no " in it
        "VERSION": html.escape(meta["version"]),
        "TITLE": html.escape(f"spendwatch · LLM spend · {scope} · data up to {meta['as_of']} UTC"),
        "CSS": _asset("report.css"),
        "DATA": embed_json(data),
        "PLOTLY": plotly,
        "APP": app,
    }
    # one pass over the template only: text substituted in is never scanned for placeholders
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], _asset("template.html"))
