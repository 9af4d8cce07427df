"""Staff accounts: roles, admin login lockout and the admin audit trail."""
