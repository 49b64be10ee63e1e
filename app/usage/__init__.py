"""The usage ledger: one row per upstream call, and what each call cost."""
