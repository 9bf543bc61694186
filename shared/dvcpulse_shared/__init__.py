"""dvcpulse contracts: event and API models, stream names, registry and target types.

Only declarations live here: no I/O and no behaviour beyond validation of the models.
"""
