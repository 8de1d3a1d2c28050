"""Collection: getting a file off an endpoint through live response.

Strategies are plug-ins behind one interface (`strategy`), listed in `registry`; `plan` orders
them for a job's machines, `actions` runs their live response actions (and the cleanup's),
`machines` says which machines are online, `staging` holds the bytes until Joe has them, and
`cleanup` removes what a strategy left on the endpoint. The sample job's collect handler
(`joedefender.pipeline.sample.collect`) drives them.
"""
