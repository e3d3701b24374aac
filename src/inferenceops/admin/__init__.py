"""The admin side: REST API, human authentication, RBAC. Never imported by the data plane."""
