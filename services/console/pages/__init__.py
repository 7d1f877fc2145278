"""The console's pages, one module per section: `router(deps) -> APIRouter` and optionally `NAV` (its nav links)."""
