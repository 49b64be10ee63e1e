"""Budget administration: spend limits on keys, users and teams, per calendar period."""
