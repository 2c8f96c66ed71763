"""Watch mode: the service that feeds recordings to the chain.

The watcher notices files in the inboxes, intake claims them into the spool and the
ledger; the executor (a backend: the local worker pool) sends each job to a worker
(``worker``) as ``protocol`` messages, and the coordinator's decisions around a run
(``dispatch``) and its durable end (``finish``: commit outputs, dispose of originals,
quarantine) stay in this process; recovery and the scheduler repair and tidy up.
"""
