"""The domain: values, states and transitions of invites and memberships, free of web framework and SQL driver."""
