"""Erasure of a caller's personal data (the right to deletion of China's personal-information law):
destroying the caller's data key makes their name and phone unrecoverable in every copy the hub keeps."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy.engine import Engine

from services.common.auth import Role, access

from .keystore import erase


class ErasureIn(BaseModel):
    phone: str = Field(pattern=r"^\+?[0-9 \-()]{3,32}$", description="The caller's phone number, in any spacing.")


class ErasureOut(BaseModel):
    keys_destroyed: int = Field(description="Caller data keys destroyed (0: no caller with that number).")
    tickets: int = Field(description="Tickets whose caller's name and phone are now unrecoverable.")
    status_rows_cleaned: int = Field(description="Rows of intake's status view where the number was masked.")
    summary: str = Field(description="The same, in a sentence (never the number itself).")


def privacy_router(engine: Engine, pseudonym_key: str) -> APIRouter:
    r = APIRouter(tags=["privacy"])

    @r.post("/privacy/erasures", status_code=200, response_model=ErasureOut, dependencies=[Depends(access(Role.supervisor))])
    async def erase_caller(body: ErasureIn) -> ErasureOut:
        """Erase a caller: destroy their data key (every sealed copy of their name and phone, on Kafka, in the
        archive and in every store, becomes unreadable at once) and mask the number in intake's status view.
        The answer says what was erased, never the number. Supervisors only."""
        erased = await asyncio.to_thread(erase, engine, pseudonym_key, body.phone)
        return ErasureOut(keys_destroyed=erased.keys, tickets=erased.tickets, status_rows_cleaned=erased.status_rows,
                          summary=erased.summary())

    return r
