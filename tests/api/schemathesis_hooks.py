"""Schemathesis hooks for tests/api/test_schemathesis.py (loaded via SCHEMATHESIS_HOOKS).

A `cursor` is an opaque token signed by the server: no generator can make a valid one, so
"schema-valid request rejected" would be noise. Cursors are tested by hand in
tests/api/test_error_contract.py and test_tenant_isolation.py.
"""

import schemathesis


@schemathesis.hook
def filter_query(ctx, query):
    return not query or "cursor" not in query
