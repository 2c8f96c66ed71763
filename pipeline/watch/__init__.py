"""Watch mode: the service that feeds recordings to the chain.

The watcher notices files in the inboxes, intake claims them into the spool and the
ledger, the executor runs the chain in worker processes, finish commits outputs and
retires originals, recovery and the scheduler repair and tidy up after the fact.
"""
