"""The permission strings the API checks."""

USERS_READ = "users:read"
USERS_INVITE = "users:invite"
USERS_EDIT = "users:edit"
USERS_DELETE = "users:delete"
WEBHOOKS_MANAGE = "webhooks:manage"
AUDIT_READ = "audit:read"
ORGS_MANAGE = "orgs:manage"
# Provision members through the SCIM 2.0 service provider (/scim/v2/{org}); org-scoped keys only.
SCIM_PROVISION = "scim:provision"

ALL_PERMISSIONS = frozenset(
    {USERS_READ, USERS_INVITE, USERS_EDIT, USERS_DELETE, WEBHOOKS_MANAGE, AUDIT_READ, ORGS_MANAGE, SCIM_PROVISION}
)
