"""Usage metering, API keys, prices and quotas.

The ledger (``ledger.py``) stores API keys (hashed) and one usage record per
``Usage`` message a service emitted; ``keys.py`` creates and checks keys;
``prices.py`` turns usage into cost at report time (cost is never stored);
``quotas.py`` refuses a key whose quota is used up; ``cli.py`` adds
``voicemesh keys`` and ``voicemesh usage``. The server runtime
(``voicemesh.runtime.auth``) wires all of it into every service.
"""
