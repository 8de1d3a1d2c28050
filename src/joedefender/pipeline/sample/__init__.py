"""The sample job: one per distinct sample, a persisted state machine advanced one step at a time.

`job.SampleWork` runs the handler its state names (`job.HANDLERS`, beside the domain's
transition table): lookup, collect, submit, analysis. The handlers are siblings: none calls
another, nor its caller; a handler's result says what comes next (`handler`), and every write
goes through one `ledger.JobLedger`.
"""
