"""The built-in plugins, written exactly as a third party would write one.

``BUILTINS`` maps each one's name in ``[plugins.NAME]`` to its ``module:Class``.
"""

from __future__ import annotations

BUILTINS: dict[str, str] = {
    "unlock": "arrears_router.plugins.unlock:Unlock",
    "ledger": "arrears_router.plugins.ledger:Ledger",
    "sms": "arrears_router.plugins.sms:Sms",
    "webhook": "arrears_router.plugins.webhook:Webhook",
}
