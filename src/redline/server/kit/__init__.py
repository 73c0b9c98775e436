"""Small shared building blocks of the server: ids, clock, signing, pagination, limits."""
