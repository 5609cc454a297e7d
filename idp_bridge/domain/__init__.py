"""The domain: values, states and transitions of invites and memberships, and the provider capability protocols;
free of web framework, SQL driver and adapters."""
