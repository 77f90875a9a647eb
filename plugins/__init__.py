"""The built-in plugins, written exactly as a third party would write one.

``BUILTINS`` maps each one's name in ``[plugins.NAME]`` to its ``module:Class``.
"""

from __future__ import annotations

BUILTINS: dict[str, str] = {
    "unlock": "plugins.unlock:Unlock",
    "ledger": "plugins.ledger:Ledger",
    "sms": "plugins.sms:Sms",
    "webhook": "plugins.webhook:Webhook",
}
