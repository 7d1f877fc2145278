"""Waiting for a service process's HTTP API to answer (end-to-end tests start them as processes)."""

from __future__ import annotations

import asyncio
import time

import httpx


async def wait_healthy(port: int, timeout: float = 120, what: str = "intake") -> None:
    """Return once `GET /health` on 127.0.0.1:port answers 200; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as c:
        while time.monotonic() < deadline:
            try:
                if (await c.get(f"http://127.0.0.1:{port}/health")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.3)
    raise TimeoutError(f"{what} did not come up")
