"""The admin listener: an API for scripts, a console for people, metrics for Prometheus.

It is a process of its own beside ``serve``'s two (or run alone with ``arrears-router
admin``), on its own address, and off unless a token is configured: what ops do there never
waits on, or slows, the callback WeChat calls.
"""
