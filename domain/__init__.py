"""The pure core of Contextgate: events, the session aggregate and the ports.

Nothing in this package may import from outside the standard library; a unit
test walks every module's imports to keep it that way.
"""
