"""Research projects: what an admin registers, and what the public register shows."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field, field_validator, model_validator

from telehealth.codes import CODES
from telehealth.consent import Purpose
from telehealth.research.pseudonym import new_key
from telehealth.storage import research_projects as store

Conn = psycopg.AsyncConnection[Any]


class Cohort(BaseModel):
    """Who the project may study; empty lists mean no restriction on that dimension."""

    sex: list[Literal["female", "male", "other", "unknown"]] = Field(default_factory=list)
    conditions: list[str] = Field(default_factory=list, description="any of these, e.g. t1d, t2d, copd")
    age_min: int | None = Field(None, ge=0, le=130)
    age_max: int | None = Field(None, ge=0, le=130)


class ProjectIn(BaseModel):
    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
    title: str = Field(min_length=1, max_length=200)
    owner: str = Field(min_length=1, max_length=200, description="accountable person or organisation")
    purpose: Purpose
    codes: list[str] = Field(min_length=1)
    cohort: Cohort = Field(default_factory=Cohort)
    starts_on: date
    ends_on: date
    bucket_hours: Literal[1, 3, 6, 12, 24, 168] = Field(
        1, description="the project's one bucket size (hours, aligned to UTC); every release uses it"
    )
    epsilon_per_release: float | None = Field(
        None, gt=0, le=10, description="differential privacy: epsilon charged by each release; none: off"
    )
    epsilon_budget: float | None = Field(None, gt=0, le=100, description="the project's total epsilon")

    @field_validator("codes")
    @classmethod
    def _known(cls, codes: list[str]) -> list[str]:
        unknown = [c for c in codes if c not in CODES]
        if unknown:
            raise ValueError(f"unknown code(s) {', '.join(unknown)}; known: {', '.join(CODES)}")
        return sorted(set(codes))

    @model_validator(mode="after")
    def _consistent(self) -> ProjectIn:
        if self.starts_on > self.ends_on:
            raise ValueError("starts_on must not be after ends_on")
        if (self.epsilon_per_release is None) != (self.epsilon_budget is None):
            raise ValueError("differential privacy needs both epsilon_per_release and epsilon_budget")
        if (
            self.epsilon_budget is not None
            and self.epsilon_per_release is not None
            and self.epsilon_per_release > self.epsilon_budget
        ):
            raise ValueError("epsilon_per_release cannot exceed epsilon_budget")
        return self


class Project(ProjectIn):
    id: int
    created_by: str
    created_at: datetime


def _project(row: dict[str, Any]) -> Project:
    return Project.model_validate({k: v for k, v in row.items() if k != "pseudonym_key"})


async def create_project(conn: Conn, body: ProjectIn, created_by: str) -> Project:
    row = await store.insert_project(
        conn,
        (
            body.slug,
            body.title,
            body.owner,
            body.purpose.value,
            body.codes,
            Jsonb(body.cohort.model_dump()),
            body.starts_on,
            body.ends_on,
            body.bucket_hours,
            body.epsilon_per_release,
            body.epsilon_budget,
            new_key(),
            created_by,
        ),
    )
    return _project(row)


async def get_project(conn: Conn, project_id: int) -> tuple[Project, bytes] | None:
    """The project and its pseudonym key."""
    row = await store.project_row(conn, project_id)
    return (_project(row), bytes(row["pseudonym_key"])) if row else None


async def all_projects(conn: Conn) -> list[tuple[Project, bytes]]:
    return [(_project(r), bytes(r["pseudonym_key"])) for r in await store.project_rows(conn)]


async def cohort_patients(conn: Conn, cohort: Cohort, at: date) -> list[UUID]:
    """Patients matching the cohort definition (age on `at`)."""
    return await store.cohort_patient_ids(
        conn,
        sex=cohort.sex,
        conditions=cohort.conditions,
        age_min=cohort.age_min,
        age_max=cohort.age_max,
        at=at,
    )
