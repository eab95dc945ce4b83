//! Client authentication with signed assertions and DPoP at the token endpoint.
