"""newswatch: news monitoring and Telegram alerts.

This package is the application layer: the command line (`cli`), the daemon that wires the
collecting and the deciding together (`daemon`), the HTTP endpoint, metrics, doctor and
reports. The two packages it wires sit beside it at the top of the source tree and are
imported as `newswatch.crawler` (collecting, from `crawler/`) and `newswatch.alerts` (deciding
and delivering, from `alerts/`); the shipped YAML is `newswatch.config` (from `config/`).
An installed wheel holds them physically under `newswatch/` (pyproject's `package-dir`); a
source checkout, or an editable install of one, finds them through this package's search path,
extended below by the folder above it. See docs/architecture.md.
"""

from pathlib import Path as _Path

_here = _Path(__file__).resolve().parent
if not (_here / "crawler").is_dir():
    __path__.append(str(_here.parent))
