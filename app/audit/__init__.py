"""The audit trail of admin actions, and admins' support access to tenants' objects."""
