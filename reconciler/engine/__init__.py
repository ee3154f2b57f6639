"""The engine: the queue, the reconciler, planning, drift measuring and run reports.

Every trigger reaches the database through here; the Discord layer talks to the engine, never to the store.
"""
