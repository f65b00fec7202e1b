"""`/api/v1/auth`: register, token (OAuth2 password flow), me."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, ConfigDict

from tools import auth
from web.deps import CurrentUser, SessionDep, SettingsDep, get_secret_key
from web.routes import UTCDateTime
from web.security import issue_access_token

router = APIRouter(prefix="/auth", tags=["auth"])


class RegisterIn(BaseModel):
    email: str
    password: str


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    created_at: UTCDateTime


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


@router.post("/register", status_code=201, response_model=UserOut, summary="Create an account")
def register(body: RegisterIn, db: SessionDep) -> UserOut:
    """Email is validated and lower-cased; the password needs at least 8 characters. 409 when taken."""
    user = auth.register_user(db, body.email, body.password)
    return UserOut.model_validate(user)


@router.post("/token", response_model=TokenOut, summary="Sign in (OAuth2 password flow)")
def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    db: SessionDep,
    settings: SettingsDep,
    secret: Annotated[str, Depends(get_secret_key)],
) -> TokenOut:
    """Form fields `username` (the email) and `password`. 401 for any wrong credential."""
    user = auth.authenticate_user(db, form.username, form.password)
    issued = issue_access_token(user, settings, secret)
    return TokenOut(access_token=issued.token, expires_in=issued.expires_in)


@router.get("/me", response_model=UserOut, summary="The signed-in user")
def me(user: CurrentUser) -> UserOut:
    return UserOut.model_validate(user)
