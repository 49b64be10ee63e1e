"""Teams and users: who a key belongs to, and whose budget it draws on."""
