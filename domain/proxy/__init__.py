"""The proxy's domain: the canonical chat format every dialect and provider translates
to and from, routing, pricing and policy decisions. Pure: no I/O."""
