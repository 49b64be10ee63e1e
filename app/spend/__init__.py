"""Budgets and the money path: reserve before the upstream call, settle after it, reap leases."""
