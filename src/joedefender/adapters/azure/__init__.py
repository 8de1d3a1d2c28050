"""The store on Azure Storage: state in Azure Tables, the work queue on Storage Queues.

One table per store holds three partitions: `state` (documents, history, the work index and the
outbox, so that a unit of work is one entity-group transaction), `machines` (the machine leases)
and `limits` (the tenant's shared Defender rate budget). The queue messages only wake a worker;
the work index entity of a key is the truth about it.
"""
