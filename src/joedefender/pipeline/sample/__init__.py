"""The sample job: one per distinct sample, a persisted state machine advanced one step at a time.

`job.SampleWork` runs the handler its state names (`SampleWork.handlers`, beside the domain's
transition table): lookup, collect, submit, analysis, and for a file a command line named by its
path, resolve (`attach` joins alerts to jobs, for triage and resolve alike). The handlers are siblings: none calls
another, nor its caller; a handler's result says what comes next (`handler`), and every write
goes through one `ledger.JobLedger`.
"""
