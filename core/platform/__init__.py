"""The plugin platform: what happens to a payment once it is stored.

``registry`` loads and calls the plugins; ``dispatcher`` claims deliveries and runs each on its
one plugin under a ``deadlines`` timeout; ``outcomes`` says what an attempt came to and writes
it; ``runtime`` starts, reloads and stops all of it with the store.
"""
