"""The wire: one notification in, one reply out.

``envelope`` decodes the request and encodes the reply; ``merchants`` holds each merchant's
keys; ``signature`` and ``cipher`` verify and decrypt; ``intake`` runs them in that order and
hands what WeChat signed to the store. ``notifier`` is WeChat's side of the same wire, for
``simulate``, the bench and the tests.
"""
